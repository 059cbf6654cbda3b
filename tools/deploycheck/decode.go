package deploycheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest.
type Object struct {
	APIVersion, Kind, Name string
	// Typed is a pointer to the API type, e.g. *appsv1.Deployment.
	Typed any
}

// schemas maps "apiVersion/kind" to a constructor of its Go type. A kind
// that is not here is an error: what cannot be checked is not shipped.
var schemas = map[string]func() any{
	"v1/ServiceAccount":                             func() any { return new(corev1.ServiceAccount) },
	"v1/Service":                                    func() any { return new(corev1.Service) },
	"v1/ConfigMap":                                  func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                     func() any { return new(corev1.Secret) },
	"apps/v1/Deployment":                            func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":                 func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":            func() any { return new(networkingv1.NetworkPolicy) },
	"networking.k8s.io/v1/Ingress":                  func() any { return new(networkingv1.Ingress) },
	"autoscaling/v2/HorizontalPodAutoscaler":        func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"keda.sh/v1alpha1/ScaledObject":                 func() any { return new(ScaledObject) },
	"kustomize.config.k8s.io/v1beta1/Kustomization": func() any { return new(types.Kustomization) },
	"kustomize.config.k8s.io/v1alpha1/Component":    func() any { return new(types.Kustomization) },
}

// StrictUnmarshal decodes one YAML document into v and fails on unknown
// fields (matched case-sensitively, as the API server does), duplicate
// fields and type mismatches.
func StrictUnmarshal(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// DecodeStrict decodes one YAML document into the Go type its apiVersion
// and kind name, strictly (see [StrictUnmarshal]).
func DecodeStrict(doc []byte) (Object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return Object{}, err
	}
	key := tm.APIVersion + "/" + tm.Kind
	newT := schemas[key]
	if newT == nil {
		return Object{}, fmt.Errorf("%s: no schema known to deploycheck (add it to the registry in decode.go)", key)
	}
	obj := newT()
	if err := StrictUnmarshal(doc, obj); err != nil {
		return Object{}, fmt.Errorf("%s: %w", key, err)
	}
	o := Object{APIVersion: tm.APIVersion, Kind: tm.Kind, Typed: obj}
	if m, ok := obj.(metav1.Object); ok {
		o.Name = m.GetName()
	} else if k, ok := obj.(*types.Kustomization); ok && k.MetaData != nil {
		o.Name = k.MetaData.Name
	}
	return o, nil
}

// SplitDocuments splits a multi-document YAML stream, dropping empty
// documents.
func SplitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

// DecodeAll decodes every document of a YAML stream strictly.
func DecodeAll(data []byte) ([]Object, error) {
	docs, err := SplitDocuments(data)
	if err != nil {
		return nil, err
	}
	var objs []Object
	var errs []error
	for i, d := range docs {
		o, err := DecodeStrict(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// stripComments drops comment-only lines, so that a document of comments
// counts as empty.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		b.Write(line)
	}
	return b.Bytes()
}
