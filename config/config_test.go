package config

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// writeFile writes content to a fresh file in a temporary directory and
// returns its path.
func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	require.NoError(tb, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// noEnv is an empty environment, so tests do not see the process's.
var noEnv = []string{}

func TestDefaultAndDevAreValid(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "default", cfg: Default()},
		{name: "dev", cfg: Dev()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, tt.cfg.Validate())
			require.Empty(t, tt.cfg.Warnings())
		})
	}
}

func TestDevListensOnLoopback(t *testing.T) {
	t.Parallel()

	c := Dev()
	for _, addr := range []string{c.Webhook.Listen, c.Admin.Listen, c.NATS.Embedded.Listen} {
		host, _, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host, addr)
	}
	require.Equal(t, "127.0.0.1:8080", c.Webhook.Listen)
	require.Equal(t, "127.0.0.1:9090", c.Admin.Listen)

	// Dev differs from Default only in the listeners and the console.
	require.True(t, c.Admin.Console)
	require.False(t, Default().Admin.Console)
	d := Default()
	d.Webhook.Listen, d.Admin.Listen, d.Admin.Console = c.Webhook.Listen, c.Admin.Listen, true
	require.Equal(t, d, c)
}

func TestDefaults(t *testing.T) {
	t.Parallel()

	c := Default()
	tests := []struct {
		key  string
		got  any
		want any
	}{
		{"nats.url", c.NATS.URL, ""},
		{"nats.name", c.NATS.Name, "falbridge"},
		{"nats.embedded.listen", c.NATS.Embedded.Listen, "127.0.0.1:4222"},
		{"streams.requests", c.Streams.Requests, "FAL_REQUESTS"},
		{"streams.jobs_bucket", c.Streams.JobsBucket, "fal_jobs"},
		{"subjects.requests", c.Subjects.Requests, "fal.requests.>"},
		{"subjects.results", c.Subjects.Results, "fal.results"},
		{"fal.queue_url", c.Fal.QueueURL, "https://queue.fal.run"},
		{"fal.run_url", c.Fal.RunURL, "https://fal.run"},
		{"fal.jwks_url", c.Fal.JWKSURLs, []string{"https://rest.fal.ai/.well-known/jwks.json", "https://rest.alpha.fal.ai/.well-known/jwks.json"}},
		{"webhook.listen", c.Webhook.Listen, ":8080"},
		{"webhook.path", c.Webhook.Path, "/fal/webhook"},
		{"webhook.verify", c.Webhook.Verify, true},
		{"admin.listen", c.Admin.Listen, ":9090"},
		{"limits.workers", c.Limits.Workers, 64},
		{"limits.max_in_flight", c.Limits.MaxInFlight, 256},
		{"consumer.ambiguous_submit_policy", c.Consumer.AmbiguousSubmitPolicy, "fail"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.got)
		})
	}
}

func TestKeysAndEnvNames(t *testing.T) {
	t.Parallel()

	keys := Keys()
	require.Len(t, keys, 84)
	require.Equal(t, "nats.url", keys[0])
	require.Equal(t, "spend.prices_refresh", keys[len(keys)-1])
	seen := map[string]bool{}
	for _, k := range keys {
		env := EnvName(k)
		require.False(t, seen[env], "duplicate env name %s", env)
		seen[env] = true
		require.NotEmpty(t, help[k], "help for %s", k)
	}
	require.Len(t, help, len(keys), "help has entries for unknown keys")

	tests := []struct{ key, env string }{
		{"webhook.public_url", "FALBRIDGE_WEBHOOK_PUBLIC_URL"},
		{"nats.tls.ca_file", "FALBRIDGE_NATS_TLS_CA_FILE"},
		{"limits.workers", "FALBRIDGE_LIMITS_WORKERS"},
		{"limits.max_in_flight_per_model", "FALBRIDGE_LIMITS_MAX_IN_FLIGHT_PER_MODEL"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.env, EnvName(tt.key))
			require.Contains(t, keys, tt.key)
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	t.Parallel()

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	for _, k := range Keys() {
		f := fs.Lookup(k)
		require.NotNil(t, f, k)
		require.NotEmpty(t, f.Usage, k)
	}
	require.Equal(t, "64", fs.Lookup("limits.workers").DefValue)
	require.Equal(t, "30s", fs.Lookup("polling.max_interval").DefValue)
	require.Equal(t, "true", fs.Lookup("webhook.verify").DefValue)
	require.Equal(t, "127.0.0.1:4222", fs.Lookup("nats.embedded.listen").DefValue)

	dev := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	base := Dev()
	base.Fal.Key = "id:secret"
	RegisterFlagsFrom(dev, base)
	require.Equal(t, "127.0.0.1:8080", dev.Lookup("webhook.listen").DefValue)
	require.Empty(t, dev.Lookup("fal.key").DefValue, "secrets are not shown")

	// Unset flags leave the defaults alone.
	require.NoError(t, fs.Parse(nil))
	c, err := Load(LoadOptions{Flags: fs, Environ: noEnv})
	require.NoError(t, err)
	require.Equal(t, Default(), *c)
}

func TestWebhookURL(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		publicURL string
		path      string
		want      string
	}{
		{"empty", "", "/fal/webhook", ""},
		{"base", "https://bridge.example.com", "/fal/webhook", "https://bridge.example.com/fal/webhook"},
		{"base slash", "https://bridge.example.com/", "/fal/webhook", "https://bridge.example.com/fal/webhook"},
		{"prefix", "https://example.com/bridge", "/fal/webhook", "https://example.com/bridge/fal/webhook"},
		{"full", "https://example.com/fal/webhook", "/fal/webhook", "https://example.com/fal/webhook"},
		{"query", "https://example.com?token=x", "/fal/webhook", "https://example.com/fal/webhook?token=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := Webhook{PublicURL: tt.publicURL, Path: tt.path}
			require.Equal(t, tt.want, w.URL())
		})
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()

	c := Default()
	require.Equal(t, []string{JWKSURLDefault, JWKSURLAlphaDefault}, c.WebhookJWKSURLs())
	c.Webhook.JWKSURLs = []string{"http://127.0.0.1:8787/.well-known/jwks.json"}
	require.Equal(t, c.Webhook.JWKSURLs, c.WebhookJWKSURLs())

	l := Limits{MaxInFlightPerModel: 7, ModelLimits: map[string]int{"fal-ai/flux/dev": 2}}
	require.Equal(t, 2, l.ModelLimit("fal-ai/flux/dev"))
	require.Equal(t, 7, l.ModelLimit("fal-ai/fast-sdxl"))

	require.False(t, TLS{}.Enabled())
	require.True(t, TLS{ServerName: "nats"}.Enabled())
}

func TestRedacted(t *testing.T) {
	t.Parallel()

	c := Default()
	c.Fal.Key = "key-id:key-secret"
	c.NATS.Token = "tok"
	c.Limits.ModelLimits = map[string]int{"m": 1}
	r := c.Redacted()
	require.Equal(t, Secret("****"), r.Fal.Key)
	require.Equal(t, Secret("****"), r.NATS.Token)
	require.Equal(t, Secret(""), r.NATS.Password)
	require.Equal(t, "key-id:key-secret", c.Fal.Key.Reveal(), "the original is untouched")

	r.Limits.ModelLimits["m"] = 5
	require.Equal(t, 1, c.Limits.ModelLimits["m"], "Redacted copies the map")
	r.Subjects.ResultSubjectAllow[0] = "x.>"
	require.Equal(t, []string{ResultSubjectAllowDefault}, c.Subjects.ResultSubjectAllow, "Redacted copies the list")

	// A password (or token) written into nats.url is secret too.
	c.NATS.URL = "nats://bridge:url-pass-canary@nats-1:4222, tls://tok-canary@nats-2:4222,nats://nats-3:4222"
	r = c.Redacted()
	require.Equal(t, "nats://***@nats-1:4222, tls://***@nats-2:4222,nats://nats-3:4222", r.NATS.URL)
	y, err := r.YAML()
	require.NoError(t, err)
	require.NotContains(t, string(y), "url-pass-canary")
	require.NotContains(t, string(y), "tok-canary")
	require.Contains(t, string(y), "nats://***@nats-1:4222")
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:p@h:4222", "nats://***@h:4222"},
		{"nats://tok@h", "nats://***@h"},
		{"nats://u:p@ss@h:4222", "nats://***@h:4222"}, // an unescaped @ in the password
		{"wss://u:p@a:443,wss://b:443", "wss://***@a:443,wss://b:443"},
		{"u:p@h:4222", "***@h:4222"}, // no scheme (nats.go adds nats://)
		{"nats://a:1, nats://u:p@b:2", "nats://a:1, nats://***@b:2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, RedactURL(tt.in))
		})
	}
}

func TestReservedSubjects(t *testing.T) {
	t.Parallel()
	c := Default()
	require.Equal(t, []string{"fal.requests.>", "fal.results", "fal.errors", "fal.status", "fal.cancel", "falbridge"}, c.ReservedSubjects())
	c.Subjects.Results = "svc.out"
	require.Contains(t, c.ReservedSubjects(), "svc.out")
}

func TestYAMLRoundTrip(t *testing.T) {
	t.Parallel()

	c := Default()
	c.NATS.URL = "nats://127.0.0.1:4222,nats://127.0.0.1:4223"
	c.Webhook.PublicURL = "https://bridge.example.com"
	c.Webhook.Verify = false
	c.Limits.Workers = 3
	c.Limits.MaxInFlight = 9
	c.Limits.ModelLimits = map[string]int{"fal-ai/flux-pro/v1.1": 2, "fal-ai/flux/dev": 4}
	c.Polling.MinInterval = 1500 * time.Millisecond
	c.Streams.JobsTTL = 0
	c.Log.Format = "text"
	c.Limits.MaxPending = 8
	c.Spend.Prices = []string{"fal-ai/flux/dev=0.025/megapixel"}
	c.Spend.Budgets = []string{"tenant:team-a=20/day"}

	out, err := c.YAML()
	require.NoError(t, err)
	path := writeFile(t, "roundtrip.yaml", string(out))
	got, err := Load(LoadOptions{File: path, Environ: noEnv})
	require.NoError(t, err)
	require.Equal(t, c, *got)

	// Keys come out in struct order.
	var top yaml.Node
	require.NoError(t, yaml.Unmarshal(out, &top))
	var names []string
	for i := 0; i < len(top.Content[0].Content); i += 2 {
		names = append(names, top.Content[0].Content[i].Value)
	}
	require.Equal(t, []string{"nats", "streams", "subjects", "fal", "webhook", "admin", "limits", "polling", "consumer", "shutdown", "log", "spend"}, names)
}

func TestExampleFile(t *testing.T) {
	t.Parallel()

	t.Run("loads as Default", func(t *testing.T) {
		t.Parallel()
		c, err := Load(LoadOptions{File: "example.yaml", Environ: noEnv})
		require.NoError(t, err)
		require.Equal(t, Default(), *c)
	})

	t.Run("covers every key", func(t *testing.T) {
		t.Parallel()
		data, err := os.ReadFile("example.yaml")
		require.NoError(t, err)
		var raw map[string]any
		require.NoError(t, yaml.Unmarshal(data, &raw))
		var got []string
		var walk func(m map[string]any, prefix string)
		walk = func(m map[string]any, prefix string) {
			for k, v := range m {
				key := strings.TrimPrefix(prefix+"."+k, ".")
				if sub, ok := v.(map[string]any); ok && sections[key] {
					walk(sub, key)
					continue
				}
				got = append(got, key)
			}
		}
		walk(raw, "")
		want := Keys()
		slices.Sort(got)
		slices.Sort(want)
		require.Equal(t, want, got)
	})

	t.Run("SampleYAML is the file", func(t *testing.T) {
		t.Parallel()
		data, err := os.ReadFile("example.yaml")
		require.NoError(t, err)
		require.Equal(t, data, SampleYAML())
	})
}
