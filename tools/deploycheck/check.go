package deploycheck

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// What the falbridge binary does by default (config/example.yaml,
// internal/service): the manifests must agree.
const (
	// AdminPort serves /healthz, /readyz and /metrics (admin.listen ":9090").
	AdminPort = 9090
	// WebhookPort serves fal's webhooks (webhook.listen ":8080").
	WebhookPort = 8080
	// HealthzPath answers 200 while the process serves.
	HealthzPath = "/healthz"
	// ReadyzPath answers 200 while NATS, the stream and the bucket answer
	// and the pool is not draining.
	ReadyzPath = "/readyz"
	// ContainerName is the falbridge container in the Deployment.
	ContainerName = "falbridge"
	// MinReplicasFloor is the fewest replicas deploy/ may run.
	MinReplicasFloor = 2
)

// secretEnv are variables that carry secrets: never a literal value.
var secretEnv = []string{"FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALBRIDGE_FAL_KEY", "FALBRIDGE_NATS_PASSWORD", "FALBRIDGE_NATS_TOKEN"}

// Set is one rendered variant, indexed by kind.
type Set struct {
	Deployment      *appsv1.Deployment
	Services        map[string]*corev1.Service
	ConfigMaps      map[string]*corev1.ConfigMap
	ServiceAccounts map[string]*corev1.ServiceAccount
	Secrets         []*corev1.Secret
	PDBs            []*policyv1.PodDisruptionBudget
	NetworkPolicies []*networkingv1.NetworkPolicy
	Ingresses       []*networkingv1.Ingress
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	ScaledObjects   []*ScaledObject
}

// NewSet indexes decoded objects; it wants exactly one Deployment.
func NewSet(objs []Object) (*Set, error) {
	s := &Set{Services: map[string]*corev1.Service{}, ConfigMaps: map[string]*corev1.ConfigMap{}, ServiceAccounts: map[string]*corev1.ServiceAccount{}}
	var deployments int
	for _, o := range objs {
		switch t := o.Typed.(type) {
		case *appsv1.Deployment:
			s.Deployment = t
			deployments++
		case *corev1.Service:
			s.Services[t.Name] = t
		case *corev1.ConfigMap:
			s.ConfigMaps[t.Name] = t
		case *corev1.ServiceAccount:
			s.ServiceAccounts[t.Name] = t
		case *corev1.Secret:
			s.Secrets = append(s.Secrets, t)
		case *policyv1.PodDisruptionBudget:
			s.PDBs = append(s.PDBs, t)
		case *networkingv1.NetworkPolicy:
			s.NetworkPolicies = append(s.NetworkPolicies, t)
		case *networkingv1.Ingress:
			s.Ingresses = append(s.Ingresses, t)
		case *autoscalingv2.HorizontalPodAutoscaler:
			s.HPAs = append(s.HPAs, t)
		case *ScaledObject:
			s.ScaledObjects = append(s.ScaledObjects, t)
		default:
			return nil, fmt.Errorf("%s/%s %s: not expected in a rendered variant", o.APIVersion, o.Kind, o.Name)
		}
	}
	if deployments != 1 {
		return nil, fmt.Errorf("want exactly one Deployment, got %d", deployments)
	}
	return s, nil
}

// Facts are what [Check] found, for per-variant expectations.
type Facts struct {
	// Config is the falbridge container's effective configuration.
	Config map[string]string
	// Autoscaler is "keda", "hpa" or "".
	Autoscaler string
	// MinReplicas is the Deployment's replicas, or the autoscaler's floor.
	MinReplicas int32
	// IngressHosts are the hosts the Ingresses route.
	IngressHosts []string
}

type checker struct {
	errs []error
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// Check checks one rendered variant against what the falbridge binary does.
// It returns every problem found.
func Check(s *Set, schema ConfigSchema) (Facts, error) {
	c := &checker{}
	f := Facts{}
	d := s.Deployment
	pod := &d.Spec.Template.Spec
	ctr := container(pod)
	if ctr == nil {
		c.errorf("deployment %s: no container named %q", d.Name, ContainerName)
		return f, errors.Join(c.errs...)
	}

	// The config: file from the ConfigMap, then the environment.
	file := c.configFile(s, pod, ctr)
	cfg, cerrs := schema.Effective(file, ctr.Env)
	c.errs = append(c.errs, cerrs...)
	f.Config = cfg

	c.checkConfig(cfg)
	c.checkSecrets(s, pod, ctr, cfg)
	c.checkSecurity(s, pod, ctr)
	c.checkListeners(s, d, ctr, cfg)
	c.checkShutdown(pod, cfg)
	c.checkSelectors(s, d)
	c.checkNetworkPolicies(s)
	f.Autoscaler, f.MinReplicas = c.checkScaling(s, d, cfg)
	f.IngressHosts = c.checkIngress(s, ctr, cfg)
	return f, errors.Join(c.errs...)
}

func container(pod *corev1.PodSpec) *corev1.Container {
	for i := range pod.Containers {
		if pod.Containers[i].Name == ContainerName {
			return &pod.Containers[i]
		}
	}
	return nil
}

func envVar(ctr *corev1.Container, name string) *corev1.EnvVar {
	for i := range ctr.Env {
		if ctr.Env[i].Name == name {
			return &ctr.Env[i]
		}
	}
	return nil
}

// mountedFile finds the volume and key behind a file path in the container.
func mountedFile(pod *corev1.PodSpec, ctr *corev1.Container, file string) (*corev1.Volume, string, error) {
	for _, m := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || m.SubPath != "" {
			continue
		}
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil {
			return nil, "", fmt.Errorf("volumeMount %s names no volume", m.Name)
		}
		var items []corev1.KeyToPath
		switch {
		case vol.ConfigMap != nil:
			items = vol.ConfigMap.Items
		case vol.Secret != nil:
			items = vol.Secret.Items
		default:
			return vol, rel, nil
		}
		if len(items) == 0 {
			return vol, rel, nil
		}
		for _, it := range items {
			if it.Path == rel {
				return vol, it.Key, nil
			}
		}
		return nil, "", fmt.Errorf("%s: volume %s has no item at %s", file, vol.Name, rel)
	}
	return nil, "", fmt.Errorf("%s: not in any volumeMount", file)
}

func (c *checker) configFile(s *Set, pod *corev1.PodSpec, ctr *corev1.Container) []byte {
	e := envVar(ctr, FileEnv)
	if e == nil || e.Value == "" {
		c.errorf("container: %s is not set: the mounted config file would be ignored", FileEnv)
		return nil
	}
	vol, key, err := mountedFile(pod, ctr, e.Value)
	if err != nil {
		c.errorf("%s=%s: %v", FileEnv, e.Value, err)
		return nil
	}
	if vol.ConfigMap == nil {
		c.errorf("%s=%s: volume %s is not a ConfigMap", FileEnv, e.Value, vol.Name)
		return nil
	}
	cm := s.ConfigMaps[vol.ConfigMap.Name]
	if cm == nil {
		c.errorf("volume %s: ConfigMap %s is not in the rendered output", vol.Name, vol.ConfigMap.Name)
		return nil
	}
	data, ok := cm.Data[key]
	if !ok {
		c.errorf("ConfigMap %s has no key %s (for %s)", cm.Name, key, e.Value)
		return nil
	}
	return []byte(data)
}

func (c *checker) checkConfig(cfg map[string]string) {
	if cfg["nats.url"] == "" {
		c.errorf("config nats.url is empty: falbridge would start an embedded NATS server in each pod")
	}
	if n, err := strconv.Atoi(cfg["streams.replicas"]); err != nil || n < 1 || n > 5 {
		c.errorf("config streams.replicas = %q: want 1..5", cfg["streams.replicas"])
	}
}

// checkSecrets: secrets are referenced, never shipped or written inline.
func (c *checker) checkSecrets(s *Set, pod *corev1.PodSpec, ctr *corev1.Container, cfg map[string]string) {
	for _, sec := range s.Secrets {
		c.errorf("Secret %s is in the manifests: ship references, create secrets in the cluster", sec.Name)
	}
	for _, name := range secretEnv {
		if e := envVar(ctr, name); e != nil && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			c.errorf("env %s must come from a secretKeyRef", name)
		}
	}
	if e := envVar(ctr, "FAL_KEY"); e == nil && envVar(ctr, "FALBRIDGE_FAL_KEY") == nil && envVar(ctr, "FAL_KEY_ID") == nil {
		c.errorf("container: no FAL_KEY from a Secret")
	}
	for _, key := range []string{"fal.key", "nats.password", "nats.token"} {
		if v := cfg[key]; v != "" && v != "<valueFrom>" {
			c.errorf("config %s is set in plain text: use a Secret", key)
		}
	}
	// Files falbridge reads: mounted, and secrets from Secrets.
	for _, f := range []struct {
		key        string
		secretOnly bool
	}{{"nats.creds_file", true}, {"nats.nkey_seed_file", true}, {"nats.tls.key_file", true}, {"nats.tls.cert_file", false}, {"nats.tls.ca_file", false}} {
		file := cfg[f.key]
		if file == "" {
			continue
		}
		vol, _, err := mountedFile(pod, ctr, file)
		switch {
		case err != nil:
			c.errorf("config %s=%s: %v", f.key, file, err)
		case vol.Secret == nil && (f.secretOnly || vol.ConfigMap == nil):
			c.errorf("config %s=%s: volume %s is not a Secret", f.key, file, vol.Name)
		}
	}
}

func (c *checker) checkSecurity(s *Set, pod *corev1.PodSpec, ctr *corev1.Container) {
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		c.errorf("pod: automountServiceAccountToken must be false")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		c.errorf("pod: enableServiceLinks must be false: Kubernetes would inject FALBRIDGE_SERVICE_HOST etc. into falbridge's environment")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		c.errorf("pod: host namespaces must not be used")
	}
	if sa := s.ServiceAccounts[pod.ServiceAccountName]; pod.ServiceAccountName == "" || sa == nil {
		c.errorf("pod: serviceAccountName %q is not in the rendered output", pod.ServiceAccountName)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		c.errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := ctr.SecurityContext
	if sc == nil {
		c.errorf("container: no securityContext")
		return
	}
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		c.errorf("runAsNonRoot must be true")
	}
	if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		c.errorf("runAsUser must not be 0")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.errorf("seccompProfile must be RuntimeDefault")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf("container: allowPrivilegeEscalation must be false")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		c.errorf("container: readOnlyRootFilesystem must be true")
	}
	if isTrue(sc.Privileged) {
		c.errorf("container: must not be privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		c.errorf("container: capabilities must drop ALL and add none")
	}
	if ctr.Image == "" {
		c.errorf("container: no image")
	}
	// Resources: requests and limits for cpu and memory, requests <= limits.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ctr.Resources.Requests[r]
		lim, hasLim := ctr.Resources.Limits[r]
		if !hasReq || !hasLim {
			c.errorf("container: resources.requests and resources.limits must both set %s", r)
			continue
		}
		if req.Cmp(lim) > 0 {
			c.errorf("container: %s request %s exceeds its limit %s", r, req.String(), lim.String())
		}
	}
	if e := envVar(ctr, "GOMEMLIMIT"); e != nil {
		lim := ctr.Resources.Limits[corev1.ResourceMemory]
		n, err := parseGoMemLimit(e.Value)
		if err != nil {
			c.errorf("env GOMEMLIMIT=%q: %v", e.Value, err)
		} else if !lim.IsZero() && n >= lim.Value() {
			c.errorf("env GOMEMLIMIT=%s must be below limits.memory %s", e.Value, lim.String())
		}
	}
	for _, m := range ctr.VolumeMounts {
		if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
			c.errorf("volumeMount %s names no volume", m.Name)
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// parseGoMemLimit parses the runtime's GOMEMLIMIT syntax: bytes with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a GOMEMLIMIT value")
	}
	return n * mult, nil
}

// listenPort is the port of a listen address like ":9090".
func listenPort(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

// resolvePort resolves a named or numbered port against the container.
func resolvePort(ctr *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range ctr.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func (c *checker) checkListeners(s *Set, d *appsv1.Deployment, ctr *corev1.Container, cfg map[string]string) {
	admin, err := listenPort(cfg["admin.listen"])
	if err != nil {
		c.errorf("config admin.listen %q: %v", cfg["admin.listen"], err)
	} else if admin != AdminPort {
		c.errorf("config admin.listen %q: port %d, the binary's default is %d", cfg["admin.listen"], admin, AdminPort)
	}
	webhook, err := listenPort(cfg["webhook.listen"])
	if err != nil {
		c.errorf("config webhook.listen %q: %v", cfg["webhook.listen"], err)
	} else if webhook != WebhookPort {
		c.errorf("config webhook.listen %q: port %d, the binary's default is %d", cfg["webhook.listen"], webhook, WebhookPort)
	}
	for name, want := range map[string]int32{"admin": admin, "webhook": webhook} {
		if got, ok := resolvePort(ctr, intstr.FromString(name)); !ok || got != want {
			c.errorf("container port %q = %d, want %d (its listen address)", name, got, want)
		}
	}

	// Probes: /healthz and /readyz on the admin listener.
	probe := func(what string, p *corev1.Probe, wantPath string, required bool) {
		if p == nil {
			if required {
				c.errorf("container: no %s probe", what)
			}
			return
		}
		if p.HTTPGet == nil {
			c.errorf("%s probe: want httpGet %s", what, wantPath)
			return
		}
		if p.HTTPGet.Path != wantPath {
			c.errorf("%s probe: path %q, want %q", what, p.HTTPGet.Path, wantPath)
		}
		if got, ok := resolvePort(ctr, p.HTTPGet.Port); !ok || got != admin {
			c.errorf("%s probe: port %s is %d, want the admin listener's %d", what, p.HTTPGet.Port.String(), got, admin)
		}
		if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			c.errorf("%s probe: scheme %s, the admin listener speaks HTTP", what, p.HTTPGet.Scheme)
		}
	}
	probe("liveness", ctr.LivenessProbe, HealthzPath, true)
	probe("readiness", ctr.ReadinessProbe, ReadyzPath, true)
	probe("startup", ctr.StartupProbe, HealthzPath, false)

	if p, ok := d.Spec.Template.Annotations["prometheus.io/port"]; ok && p != strconv.Itoa(int(admin)) {
		c.errorf("annotation prometheus.io/port %s, want the admin port %d", p, admin)
	}

	// The Service: port "webhook" reaches the webhook listener, port
	// "metrics" the admin listener.
	svc := s.Services[d.Name]
	if svc == nil {
		c.errorf("no Service named %s", d.Name)
		return
	}
	want := map[string]int32{"webhook": webhook, "metrics": admin}
	for _, sp := range svc.Spec.Ports {
		w, ok := want[sp.Name]
		if !ok {
			c.errorf("Service %s: unexpected port %q", svc.Name, sp.Name)
			continue
		}
		delete(want, sp.Name)
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		if got, ok := resolvePort(ctr, tp); !ok || got != w {
			c.errorf("Service %s port %s: targetPort %s reaches %d, want %d", svc.Name, sp.Name, tp.String(), got, w)
		}
	}
	for name := range want {
		c.errorf("Service %s: no port %q", svc.Name, name)
	}
}

func (c *checker) checkShutdown(pod *corev1.PodSpec, cfg map[string]string) {
	grace, err := time.ParseDuration(cfg["shutdown.grace_period"])
	if err != nil {
		c.errorf("config shutdown.grace_period %q: %v", cfg["shutdown.grace_period"], err)
		return
	}
	if pod.TerminationGracePeriodSeconds == nil {
		c.errorf("pod: terminationGracePeriodSeconds unset (30s default) must be set above shutdown.grace_period %s", grace)
		return
	}
	if t := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; t <= grace {
		c.errorf("pod: terminationGracePeriodSeconds %s must exceed shutdown.grace_period %s, or the kubelet kills falbridge mid-drain", t, grace)
	}
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (c *checker) checkSelectors(s *Set, d *appsv1.Deployment) {
	labels := d.Spec.Template.Labels
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchExpressions) > 0 || !matches(d.Spec.Selector.MatchLabels, labels) {
		c.errorf("Deployment %s: selector does not match the pod template's labels", d.Name)
	}
	for _, svc := range s.Services {
		if !matches(svc.Spec.Selector, labels) {
			c.errorf("Service %s: selector does not match the pods", svc.Name)
		}
	}
	if len(s.PDBs) != 1 {
		c.errorf("want one PodDisruptionBudget, got %d", len(s.PDBs))
	}
	for _, p := range s.PDBs {
		if p.Spec.Selector == nil || !matches(p.Spec.Selector.MatchLabels, labels) {
			c.errorf("PodDisruptionBudget %s: selector does not match the pods", p.Name)
		}
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.Type != intstr.Int || p.Spec.MinAvailable.IntVal < 1 {
			c.errorf("PodDisruptionBudget %s: want minAvailable ≥ 1", p.Name)
		}
	}
	for _, np := range s.NetworkPolicies {
		if !matches(np.Spec.PodSelector.MatchLabels, labels) {
			c.errorf("NetworkPolicy %s: podSelector does not match the pods", np.Name)
		}
	}
}

// allows reports whether some rule of a policy admits port/proto.
func allows(ports [][]networkingv1.NetworkPolicyPort, port int32, proto corev1.Protocol) bool {
	for _, rule := range ports {
		for _, p := range rule {
			pr := corev1.ProtocolTCP
			if p.Protocol != nil {
				pr = *p.Protocol
			}
			if p.Port != nil && p.Port.Type == intstr.Int && p.Port.IntVal == port && pr == proto {
				return true
			}
		}
	}
	return false
}

func (c *checker) checkNetworkPolicies(s *Set) {
	if len(s.NetworkPolicies) == 0 {
		c.errorf("no NetworkPolicy")
	}
	for _, np := range s.NetworkPolicies {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			c.errorf("NetworkPolicy %s: policyTypes must list Ingress and Egress", np.Name)
		}
		var in, out [][]networkingv1.NetworkPolicyPort
		for _, r := range np.Spec.Ingress {
			in = append(in, r.Ports)
		}
		for _, r := range np.Spec.Egress {
			out = append(out, r.Ports)
		}
		for _, p := range []int32{WebhookPort, AdminPort} {
			if !allows(in, p, corev1.ProtocolTCP) {
				c.errorf("NetworkPolicy %s: ingress to port %d not allowed", np.Name, p)
			}
		}
		for _, p := range []struct {
			port  int32
			proto corev1.Protocol
			what  string
		}{{4222, corev1.ProtocolTCP, "NATS"}, {53, corev1.ProtocolUDP, "DNS"}, {53, corev1.ProtocolTCP, "DNS"}, {443, corev1.ProtocolTCP, "fal (HTTPS)"}} {
			if !allows(out, p.port, p.proto) {
				c.errorf("NetworkPolicy %s: egress to %s %d/%s not allowed", np.Name, p.what, p.port, p.proto)
			}
		}
	}
}

func (c *checker) checkScaling(s *Set, d *appsv1.Deployment, cfg map[string]string) (string, int32) {
	if len(s.HPAs)+len(s.ScaledObjects) > 1 {
		c.errorf("more than one autoscaler (%d HPA, %d ScaledObject): pick one", len(s.HPAs), len(s.ScaledObjects))
	}
	var kind string
	var floor, ceiling int32
	for _, h := range s.HPAs {
		kind = "hpa"
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			c.errorf("HPA %s: scaleTargetRef is not Deployment %s", h.Name, d.Name)
		}
		if h.Spec.MinReplicas == nil {
			c.errorf("HPA %s: minReplicas unset (1)", h.Name)
		} else {
			floor = *h.Spec.MinReplicas
		}
		ceiling = h.Spec.MaxReplicas
		if len(h.Spec.Metrics) == 0 {
			c.errorf("HPA %s: no metrics", h.Name)
		}
	}
	for _, so := range s.ScaledObjects {
		kind = "keda"
		t := so.Spec.ScaleTargetRef
		if t.Name != d.Name || (t.Kind != "" && t.Kind != "Deployment") {
			c.errorf("ScaledObject %s: scaleTargetRef is not Deployment %s", so.Name, d.Name)
		}
		if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil {
			c.errorf("ScaledObject %s: set minReplicaCount and maxReplicaCount (KEDA's defaults are 0 and 100)", so.Name)
		} else {
			floor, ceiling = *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount
		}
		var found bool
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "nats-jetstream" {
				continue
			}
			found = true
			m := tr.Metadata
			if m["stream"] != cfg["streams.requests"] {
				c.errorf("ScaledObject %s: stream %q, want streams.requests %q", so.Name, m["stream"], cfg["streams.requests"])
			}
			if m["consumer"] != cfg["consumer.durable"] {
				c.errorf("ScaledObject %s: consumer %q, want consumer.durable %q", so.Name, m["consumer"], cfg["consumer.durable"])
			}
			if n, err := strconv.Atoi(m["lagThreshold"]); err != nil || n <= 0 {
				c.errorf("ScaledObject %s: lagThreshold %q, want a positive integer", so.Name, m["lagThreshold"])
			}
			if m["natsServerMonitoringEndpoint"] == "" || m["account"] == "" {
				c.errorf("ScaledObject %s: natsServerMonitoringEndpoint and account are required", so.Name)
			}
		}
		if !found {
			c.errorf("ScaledObject %s: no nats-jetstream trigger", so.Name)
		}
	}
	if kind == "" {
		if d.Spec.Replicas == nil {
			c.errorf("Deployment %s: replicas unset (1) and no autoscaler", d.Name)
			return kind, 1
		}
		floor = *d.Spec.Replicas
	} else {
		if d.Spec.Replicas != nil {
			c.errorf("Deployment %s: replicas set although %s owns the count (kubectl apply would reset it)", d.Name, kind)
		}
		if floor > ceiling {
			c.errorf("%s: min replicas %d above max %d", kind, floor, ceiling)
		}
	}
	if floor < MinReplicasFloor {
		c.errorf("%d replicas at least, want %d", floor, MinReplicasFloor)
	}
	for _, p := range s.PDBs {
		if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntVal >= floor {
			c.errorf("PodDisruptionBudget %s: minAvailable %d would block every drain at %d replicas", p.Name, p.Spec.MinAvailable.IntVal, floor)
		}
	}
	return kind, floor
}

func (c *checker) checkIngress(s *Set, ctr *corev1.Container, cfg map[string]string) []string {
	var hosts []string
	webhook, _ := listenPort(cfg["webhook.listen"])
	for _, ing := range s.Ingresses {
		var tlsHosts []string
		for _, t := range ing.Spec.TLS {
			tlsHosts = append(tlsHosts, t.Hosts...)
		}
		if len(ing.Spec.Rules) == 0 {
			c.errorf("Ingress %s: no rules", ing.Name)
		}
		for _, r := range ing.Spec.Rules {
			if r.Host == "" || !slices.Contains(tlsHosts, r.Host) {
				c.errorf("Ingress %s: host %q has no TLS: fal must call an https URL", ing.Name, r.Host)
			}
			hosts = append(hosts, r.Host)
			if r.HTTP == nil {
				c.errorf("Ingress %s: rule %s has no http paths", ing.Name, r.Host)
				continue
			}
			for _, p := range r.HTTP.Paths {
				if p.Path != cfg["webhook.path"] {
					c.errorf("Ingress %s: path %q, want only webhook.path %q", ing.Name, p.Path, cfg["webhook.path"])
				}
				b := p.Backend.Service
				if b == nil {
					c.errorf("Ingress %s: path %s has no service backend", ing.Name, p.Path)
					continue
				}
				svc := s.Services[b.Name]
				if svc == nil {
					c.errorf("Ingress %s: backend Service %s is not in the rendered output", ing.Name, b.Name)
					continue
				}
				var target *intstr.IntOrString
				for _, sp := range svc.Spec.Ports {
					if (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Name == "" && sp.Port == b.Port.Number) {
						target = &sp.TargetPort
					}
				}
				if target == nil {
					c.errorf("Ingress %s: Service %s has no port %s%d", ing.Name, b.Name, b.Port.Name, b.Port.Number)
				} else if got, ok := resolvePort(ctr, *target); !ok || got != webhook {
					c.errorf("Ingress %s: backend reaches container port %d, want the webhook listener's %d", ing.Name, got, webhook)
				}
			}
		}
	}
	if len(hosts) > 0 {
		u, err := url.Parse(cfg["webhook.public_url"])
		if err != nil || u.Scheme != "https" || !slices.Contains(hosts, u.Host) || strings.Trim(u.Path, "/") != "" {
			c.errorf("config webhook.public_url %q: want https://<an Ingress host> (%s)", cfg["webhook.public_url"], strings.Join(hosts, ", "))
		}
	}
	return hosts
}
