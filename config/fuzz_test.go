package config

import (
	"os"
	"testing"
)

// FuzzLoadYAML checks that no config file, however malformed, makes loading
// panic: it either loads a valid Config or returns an error.
func FuzzLoadYAML(f *testing.F) {
	example, err := os.ReadFile("example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, seed := range []string{
		"",
		"limits:\n  workers: 4\n  model_limits:\n    fal-ai/flux-pro/v1.1: 2\n",
		"limits:\n  workers: abc\n",
		"nats: 3\n",
		"polling:\n  min_interval: 5\n",
		"fal:\n  key: [1, 2]\n",
		"? [a, b]\n: c\n",
		"1: 2\nlimits:\n  3: 4\n",
		"a: &x [*x]\n",
		"- a\n",
		"limits.workers: 3\n",
		"webhook:\n  max_body_bytes: 1e30\n",
		"limits:\n  model_limits: {\"\": -1}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := build(Default(), "fuzz.yaml", data, []string{}, nil)
		if err == nil && c == nil {
			t.Fatal("nil Config without an error")
		}
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("loaded an invalid config: %v", verr)
			}
		}
	})
}
