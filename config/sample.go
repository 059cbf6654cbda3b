package config

import (
	_ "embed"
	"slices"
)

//go:embed example.yaml
var sampleYAML []byte

// SampleYAML returns a commented config file that sets every key to its
// default (example.yaml in this package), for `falbridge config` to print.
func SampleYAML() []byte { return slices.Clone(sampleYAML) }
