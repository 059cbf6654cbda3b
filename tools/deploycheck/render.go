package deploycheck

import (
	"errors"
	"fmt"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Render builds the kustomization in dir from disk, as `kubectl apply -k`
// would, and decodes every resulting object strictly.
func Render(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []Object
	var errs []error
	for _, r := range rm.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o, err := DecodeStrict(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}
