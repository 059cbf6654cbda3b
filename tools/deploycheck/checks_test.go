package deploycheck

import (
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestChecksCatchMistakes breaks a correct render in one place at a time and
// expects Check to say so: the checks are live, not decoration.
func TestChecksCatchMistakes(t *testing.T) {
	ctr := func(s *Set) *corev1.Container { return container(&s.Deployment.Spec.Template.Spec) }
	pod := func(s *Set) *corev1.PodSpec { return &s.Deployment.Spec.Template.Spec }
	config := func(s *Set, old, new string) {
		for _, cm := range s.ConfigMaps {
			if v, ok := cm.Data["falbridge.yaml"]; ok {
				if !strings.Contains(v, old) {
					t.Fatalf("config has no %q", old)
				}
				cm.Data["falbridge.yaml"] = strings.Replace(v, old, new, 1)
			}
		}
	}
	setEnv := func(s *Set, name, value string) {
		c := ctr(s)
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	boolp := func(b bool) *bool { return &b }
	int64p := func(n int64) *int64 { return &n }
	int32p := func(n int32) *int32 { return &n }

	for _, tc := range []struct {
		name    string
		variant string // directory under deploy/; default base
		comps   []string
		breakIt func(*Set)
		want    string
	}{
		{name: "liveness path", breakIt: func(s *Set) { ctr(s).LivenessProbe.HTTPGet.Path = "/health" }, want: `liveness probe: path "/health"`},
		{name: "readiness on webhook port", breakIt: func(s *Set) { ctr(s).ReadinessProbe.HTTPGet.Port = intstr.FromString("webhook") }, want: "readiness probe: port webhook is 8080"},
		{name: "readiness by number", breakIt: func(s *Set) { ctr(s).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9091) }, want: "readiness probe: port 9091"},
		{name: "no readiness probe", breakIt: func(s *Set) { ctr(s).ReadinessProbe = nil }, want: "no readiness probe"},
		{name: "startup probe path", breakIt: func(s *Set) { ctr(s).StartupProbe.HTTPGet.Path = "/readyz" }, want: "startup probe: path"},
		{name: "admin port in config", breakIt: func(s *Set) { config(s, `listen: ":9090"`, `listen: ":9091"`) }, want: `admin.listen ":9091"`},
		{name: "admin port by env", breakIt: func(s *Set) { setEnv(s, "FALBRIDGE_ADMIN_LISTEN", ":9091") }, want: `admin.listen ":9091"`},
		{name: "webhook port in config", breakIt: func(s *Set) { config(s, `listen: ":8080"`, `listen: ":8081"`) }, want: `webhook.listen ":8081"`},
		{name: "container port", breakIt: func(s *Set) { ctr(s).Ports[0].ContainerPort = 8081 }, want: `container port "webhook" = 8081`},
		{name: "service targetPort", breakIt: func(s *Set) { s.Services["falbridge"].Spec.Ports[0].TargetPort = intstr.FromString("admin") }, want: "port webhook: targetPort admin reaches 9090, want 8080"},
		{name: "service selector", breakIt: func(s *Set) { s.Services["falbridge"].Spec.Selector = map[string]string{"app": "x"} }, want: "Service falbridge: selector"},
		{name: "grace period equal", breakIt: func(s *Set) { pod(s).TerminationGracePeriodSeconds = int64p(25) }, want: "terminationGracePeriodSeconds 25s must exceed shutdown.grace_period 25s"},
		{name: "grace period in config", breakIt: func(s *Set) { config(s, "grace_period: 25s", "grace_period: 45s") }, want: "must exceed shutdown.grace_period 45s"},
		{name: "service links", breakIt: func(s *Set) { pod(s).EnableServiceLinks = nil }, want: "enableServiceLinks"},
		{name: "token", breakIt: func(s *Set) { pod(s).AutomountServiceAccountToken = boolp(true) }, want: "automountServiceAccountToken"},
		{name: "writable root", breakIt: func(s *Set) { ctr(s).SecurityContext.ReadOnlyRootFilesystem = nil }, want: "readOnlyRootFilesystem"},
		{name: "escalation", breakIt: func(s *Set) { ctr(s).SecurityContext.AllowPrivilegeEscalation = boolp(true) }, want: "allowPrivilegeEscalation"},
		{name: "capabilities", breakIt: func(s *Set) { ctr(s).SecurityContext.Capabilities.Drop = nil }, want: "capabilities"},
		{name: "root", breakIt: func(s *Set) {
			ctr(s).SecurityContext.RunAsNonRoot = nil
			pod(s).SecurityContext.RunAsNonRoot = nil
		}, want: "runAsNonRoot"},
		{name: "seccomp", breakIt: func(s *Set) {
			ctr(s).SecurityContext.SeccompProfile = nil
			pod(s).SecurityContext.SeccompProfile = nil
		}, want: "seccompProfile"},
		{name: "no memory limit", breakIt: func(s *Set) { delete(ctr(s).Resources.Limits, corev1.ResourceMemory) }, want: "limits must both set memory"},
		{name: "GOMEMLIMIT", breakIt: func(s *Set) { envVar(ctr(s), "GOMEMLIMIT").Value = "1GiB" }, want: "GOMEMLIMIT=1GiB must be below limits.memory 512Mi"},
		{name: "literal FAL_KEY", breakIt: func(s *Set) { envVar(ctr(s), "FAL_KEY").ValueFrom = nil }, want: "FAL_KEY must come from a secretKeyRef"},
		{name: "shipped Secret", breakIt: func(s *Set) { s.Secrets = append(s.Secrets, &corev1.Secret{}) }, want: "Secret  is in the manifests"},
		{name: "unknown config key", breakIt: func(s *Set) { config(s, "  url: nats://", "  urll: nats://") }, want: `unknown key "nats.urll"`},
		{name: "unknown env", breakIt: func(s *Set) { setEnv(s, "FALBRIDGE_SERVICE_HOST", "10.0.0.1") }, want: "env FALBRIDGE_SERVICE_HOST names no config key"},
		{name: "embedded nats", breakIt: func(s *Set) { config(s, "url: nats://nats:4222", `url: ""`) }, want: "embedded NATS"},
		{name: "creds not mounted", breakIt: func(s *Set) { config(s, "/etc/falbridge/nats/", "/etc/nats/") }, want: "nats.creds_file=/etc/nats/nats.creds: /etc/nats/nats.creds: not in any volumeMount"},
		{name: "config not mounted", breakIt: func(s *Set) { envVar(ctr(s), FileEnv).Value = "/config.yaml" }, want: "not in any volumeMount"},
		{name: "one replica", breakIt: func(s *Set) { s.Deployment.Spec.Replicas = int32p(1) }, want: "1 replicas at least"},
		{name: "PDB blocks drains", breakIt: func(s *Set) { s.PDBs[0].Spec.MinAvailable = &intstr.IntOrString{IntVal: 2} }, want: "would block every drain"},
		{name: "no egress to fal", breakIt: func(s *Set) {
			np := s.NetworkPolicies[0]
			np.Spec.Egress = np.Spec.Egress[:len(np.Spec.Egress)-1]
		}, want: "egress to fal (HTTPS) 443/TCP"},
		{name: "no ingress to admin", breakIt: func(s *Set) {
			np := s.NetworkPolicies[0]
			np.Spec.Ingress = np.Spec.Ingress[:1]
		}, want: "ingress to port 9090"},
		{name: "replicas with KEDA", comps: []string{"keda"}, breakIt: func(s *Set) { s.Deployment.Spec.Replicas = int32p(2) }, want: "replicas set although keda owns the count"},
		{name: "KEDA stream", comps: []string{"keda"}, breakIt: func(s *Set) { s.ScaledObjects[0].Spec.Triggers[0].Metadata["stream"] = "FAL_PENDING" }, want: `stream "FAL_PENDING", want streams.requests "FAL_REQUESTS"`},
		{name: "KEDA consumer", comps: []string{"keda"}, breakIt: func(s *Set) { setEnv(s, "FALBRIDGE_CONSUMER_DURABLE", "bridge") }, want: `consumer "falbridge", want consumer.durable "bridge"`},
		{name: "NATS CA not mounted", comps: []string{"nats-tls"}, breakIt: func(s *Set) { envVar(ctr(s), "FALBRIDGE_NATS_TLS_CA_FILE").Value = "/ca.crt" }, want: "config nats.tls.ca_file=/ca.crt"},
		{name: "HPA target", comps: []string{"hpa"}, breakIt: func(s *Set) { s.HPAs[0].Spec.ScaleTargetRef.Name = "other" }, want: "scaleTargetRef"},
		{name: "public URL host", variant: "overlays/ingress", breakIt: func(s *Set) { setEnv(s, "FALBRIDGE_WEBHOOK_PUBLIC_URL", "https://other.example.com") }, want: "webhook.public_url"},
		{name: "public URL http", variant: "overlays/ingress", breakIt: func(s *Set) { setEnv(s, "FALBRIDGE_WEBHOOK_PUBLIC_URL", "http://falbridge.example.com") }, want: "webhook.public_url"},
		{name: "ingress path", variant: "overlays/ingress", breakIt: func(s *Set) { s.Ingresses[0].Spec.Rules[0].HTTP.Paths[0].Path = "/" }, want: `path "/", want only webhook.path "/fal/webhook"`},
		{name: "ingress TLS", variant: "overlays/ingress", breakIt: func(s *Set) { s.Ingresses[0].Spec.TLS = nil }, want: "has no TLS"},
		{name: "ingress backend", variant: "overlays/ingress", breakIt: func(s *Set) {
			s.Ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name = "metrics"
		}, want: "backend reaches container port 9090"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(deployDir, "base")
			switch {
			case tc.variant != "":
				dir = filepath.Join(deployDir, tc.variant)
			case tc.comps != nil:
				dir = combo(t, tc.comps...)
			}
			s := renderSet(t, dir)
			if _, err := Check(s, loadSchema(t)); err != nil {
				t.Fatalf("unbroken variant fails: %v", err)
			}
			tc.breakIt(s)
			_, err := Check(s, loadSchema(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got: %v", tc.want, err)
			}
		})
	}
}
