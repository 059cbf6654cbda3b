// Package deploycheck validates falbridge's Kubernetes manifests in deploy/:
// it renders every kustomization with kustomize's own library (krusty),
// decodes every object strictly into its Kubernetes API type (unknown or
// duplicate fields fail), and checks what the binary relies on: probe paths
// and ports, listener ports, the drain timeout, the security context, the
// config file's keys and the Grafana dashboard's metric names.
//
// It is a module of its own so that falbridge's module carries no
// Kubernetes dependencies; `make deploy-check` runs its tests.
package deploycheck
