package deploycheck

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

var (
	deployDir     = filepath.Join("..", "..", "deploy")
	exampleConfig = filepath.Join("..", "..", "config", "example.yaml")
)

func loadSchema(t *testing.T) ConfigSchema {
	t.Helper()
	s, err := LoadConfigSchema(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expect is what a variant must come out as.
type expect struct {
	autoscaler      string // "", "keda", "hpa"
	minReplicas     int32
	streamsReplicas string
	publicURL       string // "" = polling only
	natsURL         string // "" = nats://nats:4222
}

const exampleURL = "https://falbridge.example.com"

// shipped are the kustomizations a user applies as they are.
var shipped = map[string]expect{
	"base":             {minReplicas: 2, streamsReplicas: "1"},
	"overlays/ha":      {minReplicas: 3, streamsReplicas: "3"},
	"overlays/ingress": {minReplicas: 2, streamsReplicas: "1", publicURL: exampleURL},
}

// components are the directories under deploy/components a user combines
// with the base (components/ha before the autoscaler).
var components = []string{"ha", "ingress", "nats-tls", "keda", "hpa"}

// combo writes a kustomization of the base plus components (in order) into a
// temporary directory and returns it. Kustomize wants relative paths.
func combo(t *testing.T, comps ...string) string {
	t.Helper()
	abs, err := filepath.Abs(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(abs, p))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + rel("base") + "\ncomponents:\n"
	for _, c := range comps {
		k += "- " + rel(filepath.Join("components", c)) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// renderSet renders dir and indexes the objects.
func renderSet(t *testing.T, dir string) *Set {
	t.Helper()
	objs, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkVariant(t *testing.T, dir string, want expect) {
	t.Helper()
	f, err := Check(renderSet(t, dir), loadSchema(t))
	if err != nil {
		t.Fatalf("%s:\n%v", dir, err)
	}
	if f.Autoscaler != want.autoscaler {
		t.Errorf("autoscaler %q, want %q", f.Autoscaler, want.autoscaler)
	}
	if f.MinReplicas != want.minReplicas {
		t.Errorf("replicas (or autoscaler floor) %d, want %d", f.MinReplicas, want.minReplicas)
	}
	if got := f.Config["streams.replicas"]; got != want.streamsReplicas {
		t.Errorf("streams.replicas %s, want %s", got, want.streamsReplicas)
	}
	if got := f.Config["webhook.public_url"]; got != want.publicURL {
		t.Errorf("webhook.public_url %q, want %q", got, want.publicURL)
	}
	wantNATS := want.natsURL
	if wantNATS == "" {
		wantNATS = "nats://nats:4222"
	}
	if got := f.Config["nats.url"]; got != wantNATS {
		t.Errorf("nats.url %q, want %q", got, wantNATS)
	}
	if (len(f.IngressHosts) > 0) != (want.publicURL != "") {
		t.Errorf("Ingress hosts %v with webhook.public_url %q: want both or neither", f.IngressHosts, want.publicURL)
	}
}

// TestShipped renders the base and every overlay as `kubectl apply -k`
// would, decodes every object strictly and checks it.
func TestShipped(t *testing.T) {
	overlays, err := filepath.Glob(filepath.Join(deployDir, "overlays", "*", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{"base": true}
	for _, k := range overlays {
		rel, _ := filepath.Rel(deployDir, filepath.Dir(k))
		seen[filepath.ToSlash(rel)] = true
	}
	for name := range seen {
		if _, ok := shipped[name]; !ok {
			t.Errorf("deploy/%s has no expectations in this test: add it to shipped", name)
		}
	}
	for name, want := range shipped {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !seen[name] {
				t.Fatalf("deploy/%s is gone", name)
			}
			checkVariant(t, filepath.Join(deployDir, name), want)
		})
	}
}

// TestCombinations renders the base with every combination of the
// components: ha, ingress and nats-tls on or off, times no autoscaler, KEDA
// or HPA.
func TestCombinations(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(deployDir, "components"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, e := range entries {
		if e.IsDir() {
			onDisk = append(onDisk, e.Name())
		}
	}
	slices.Sort(onDisk)
	if want := slices.Sorted(slices.Values(components)); !slices.Equal(onDisk, want) {
		t.Fatalf("deploy/components has %v, this test combines %v", onDisk, want)
	}
	for _, ha := range []bool{false, true} {
		for _, ingress := range []bool{false, true} {
			for _, tls := range []bool{false, true} {
				for _, scaler := range []string{"", "keda", "hpa"} {
					var comps []string
					want := expect{autoscaler: scaler, minReplicas: 2, streamsReplicas: "1"}
					if ha {
						comps = append(comps, "ha")
						want.minReplicas, want.streamsReplicas = 3, "3"
					}
					if ingress {
						comps = append(comps, "ingress")
						want.publicURL = exampleURL
					}
					if tls {
						comps = append(comps, "nats-tls")
						want.natsURL = "tls://nats:4222"
					}
					if scaler != "" {
						comps = append(comps, scaler)
					}
					name := "base+" + strings.Join(comps, "+")
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						checkVariant(t, combo(t, comps...), want)
					})
				}
			}
		}
	}
}

// TestComponentMisuse: the components refuse the combinations that would
// deploy something wrong.
func TestComponentMisuse(t *testing.T) {
	for _, tc := range []struct {
		comps []string
		want  string
	}{
		// Two autoscalers: the second finds no replica count to copy.
		{[]string{"keda", "hpa"}, "fieldPath `spec.replicas` is missing for replacement source"},
		{[]string{"hpa", "keda"}, "fieldPath `spec.replicas` is missing for replacement source"},
		// ha after the autoscaler: its floor would stay 2.
		{[]string{"keda", "ha"}, "testing value /spec/replicas failed"},
		{[]string{"hpa", "ha"}, "testing value /spec/replicas failed"},
		{[]string{"ingress", "keda", "ha"}, "testing value /spec/replicas failed"},
	} {
		t.Run(strings.Join(tc.comps, "+"), func(t *testing.T) {
			t.Parallel()
			_, err := Render(combo(t, tc.comps...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rendered without the expected error %q: %v", tc.want, err)
			}
		})
	}
}

// TestEveryFile decodes every manifest and patch in deploy/ strictly, and
// insists each file is used by the kustomization next to it.
func TestEveryFile(t *testing.T) {
	var kustomizations int
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		var files []string
		for _, e := range entries {
			if !e.IsDir() {
				files = append(files, e.Name())
			}
		}
		if p == deployDir {
			if want := []string{"README.md"}; !slices.Equal(files, want) {
				t.Errorf("deploy/ holds %v; want only %v and directories", files, want)
			}
			return nil
		}
		if len(files) == 0 { // deploy/components, deploy/overlays
			return nil
		}
		if p == filepath.Join(deployDir, "nats") {
			// nats-server configuration, not manifests: the main module's
			// TestLeastPrivilege runs a server with it.
			if want := []string{"permissions.conf"}; !slices.Equal(files, want) {
				t.Errorf("%s holds %v; want only %v", p, files, want)
			}
			return nil
		}
		if !slices.Contains(files, "kustomization.yaml") {
			t.Errorf("%s: no kustomization.yaml", p)
			return nil
		}
		kustomizations++
		data, err := os.ReadFile(filepath.Join(p, "kustomization.yaml"))
		if err != nil {
			return err
		}
		o, err := DecodeStrict(data)
		if err != nil {
			t.Errorf("%s/kustomization.yaml: %v", p, err)
			return nil
		}
		k := o.Typed.(*types.Kustomization)
		used := map[string]bool{"kustomization.yaml": true}
		generated := map[string]bool{} // configMapGenerator sources
		for _, r := range slices.Concat(k.Resources, k.Components) {
			used[r] = true
		}
		for _, patch := range k.Patches {
			used[patch.Path] = true
		}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				if _, file, ok := strings.Cut(f, "="); ok { // key=file
					f = file
				}
				used[f] = true
				generated[f] = true
			}
		}
		for _, f := range files {
			full := filepath.Join(p, f)
			if !used[f] {
				t.Errorf("%s: not used by %s/kustomization.yaml", full, p)
			}
			switch filepath.Ext(f) {
			case ".yaml":
				if f == "kustomization.yaml" {
					continue
				}
				if generated[f] { // falbridge's config file
					data, err := os.ReadFile(full)
					if err != nil {
						return err
					}
					if _, errs := loadSchema(t).Effective(data, nil); len(errs) > 0 {
						t.Errorf("%s: %v", full, errs)
					}
					continue
				}
				data, err := os.ReadFile(full)
				if err != nil {
					return err
				}
				objs, err := DecodeAll(data)
				if err != nil {
					t.Errorf("%s: %v", full, err)
				}
				if len(objs) == 0 {
					t.Errorf("%s: no objects", full)
				}
			case ".json":
				data, err := os.ReadFile(full)
				if err != nil {
					return err
				}
				if !json.Valid(data) {
					t.Errorf("%s: not JSON", full)
				}
			default:
				t.Errorf("%s: unexpected file type", full)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kustomizations < 8 {
		t.Errorf("found %d kustomizations under deploy/, expected the base, overlays and components", kustomizations)
	}
}

// TestStrictDecoding proves that an unknown (or duplicate, or wrongly
// cased) field fails: each file in testdata/unknown-fields holds a mistake
// and names, in its first line "# want: …", text the error must contain.
func TestStrictDecoding(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "unknown-fields", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("testdata/unknown-fields: %v files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line must be '# want: <error text>'")
			}
			_, err = DecodeAll(data)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("decoded without the expected error %q: %v", want, err)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
	t.Run("through kustomize", func(t *testing.T) {
		t.Parallel()
		_, err := Render(filepath.Join("testdata", "bad-kustomization"))
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.template.spec.containers[0].readinessProbe.httpGet.paht"`) {
			t.Fatalf("rendered without the expected error: %v", err)
		}
	})
	t.Run("good manifest", func(t *testing.T) {
		t.Parallel()
		data, err := os.ReadFile(filepath.Join(deployDir, "base", "deployment.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeAll(data); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDockerfile checks that the image agrees with the manifests: the
// ports, the non-root user, the entrypoint.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER nonroot",
		fmt.Sprintf("EXPOSE %d %d", WebhookPort, AdminPort),
		`ENTRYPOINT ["/falbridge", "serve"]`,
		"CGO_ENABLED=0",
		"internal/version.Version=${VERSION}",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// distroless's nonroot user is 65532, which the pod runs as.
	d := renderSet(t, filepath.Join(deployDir, "base")).Deployment
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pod runAsUser must be 65532, distroless's nonroot")
	}
}
