package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeExamples are the kustomizations deploy/README.md shows, by the
// directory named in their first line, with what they must come out as.
var readmeExamples = map[string]struct {
	expect
	extra func(t *testing.T, s *Set, f Facts)
}{
	"my-falbridge": {
		expect: expect{autoscaler: "keda", minReplicas: 2, streamsReplicas: "1", publicURL: "https://falbridge.mycompany.com"},
		extra: func(t *testing.T, s *Set, f Facts) {
			if got := s.Deployment.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/falbridge:v1.0.0" {
				t.Errorf("image %q", got)
			}
			if s.Deployment.Namespace != "falbridge" {
				t.Errorf("namespace %q", s.Deployment.Namespace)
			}
			if got := s.ScaledObjects[0].Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"]; got != "nats.falbridge.svc.cluster.local:8222" {
				t.Errorf("natsServerMonitoringEndpoint %q", got)
			}
		},
	},
	"no-nats-auth": {
		expect: expect{minReplicas: 2, streamsReplicas: "1"},
		extra: func(t *testing.T, s *Set, f Facts) {
			if f.Config["nats.creds_file"] != "" {
				t.Errorf("nats.creds_file %q", f.Config["nats.creds_file"])
			}
			for _, v := range s.Deployment.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					t.Errorf("volume %s still mounts Secret %s", v.Name, v.Secret.SecretName)
				}
			}
		},
	},
}

var readmeBlockRe = regexp.MustCompile("(?s)```yaml\n# ([a-z0-9-]+)/kustomization\\.yaml\n(.*?)```")

// TestReadmeExamples renders the overlays deploy/README.md tells users to
// write, with ../deploy/ pointing at this repository's deploy/.
func TestReadmeExamples(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlockRe.FindAllStringSubmatch(string(data), -1)
	seen := map[string]bool{}
	for _, b := range blocks {
		name, body := b[1], b[2]
		seen[name] = true
		ex, ok := readmeExamples[name]
		if !ok {
			t.Errorf("README example %s/kustomization.yaml has no expectations in this test", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(dir, abs)
			if err != nil {
				t.Fatal(err)
			}
			body = strings.ReplaceAll(body, "../deploy/", filepath.ToSlash(rel)+"/")
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			checkVariant(t, dir, ex.expect)
			s := renderSet(t, dir)
			f, _ := Check(s, loadSchema(t))
			ex.extra(t, s, f)
		})
	}
	for name := range readmeExamples {
		if !seen[name] {
			t.Errorf("README has no example %s/kustomization.yaml", name)
		}
	}
}
