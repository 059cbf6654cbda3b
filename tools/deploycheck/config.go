package deploycheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Env names falbridge reads besides FALBRIDGE_<KEY> (config/load.go).
const (
	// EnvPrefix starts the variable of every config key.
	EnvPrefix = "FALBRIDGE_"
	// FileEnv names the config file; it is not a key.
	FileEnv = "FALBRIDGE_CONFIG"
)

// ConfigSchema is falbridge's configuration as config/example.yaml in the
// main module documents it (that file lists every key with its default; a
// test there keeps it equal to the code). It maps each dotted key to its
// default, as a string. Reading the file, rather than importing the config
// package, keeps this module free of falbridge's dependencies.
type ConfigSchema map[string]string

// LoadConfigSchema reads config/example.yaml.
func LoadConfigSchema(path string) (ConfigSchema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := ConfigSchema{}
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for k, v := range m {
			key := prefix + k
			// A non-empty mapping is a section; an empty one
			// (limits.model_limits: {}) is a key whose value is a map.
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(sub, key+".")
				continue
			}
			s[key] = scalarString(v)
		}
	}
	walk(raw, "")
	if len(s) == 0 {
		return nil, fmt.Errorf("%s: no keys", path)
	}
	return s, nil
}

// EnvName is the environment variable of key: FALBRIDGE_ + the key
// upper-cased with dots as underscores.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// KeyForEnv returns the key an environment variable sets.
func (s ConfigSchema) KeyForEnv(name string) (string, bool) {
	for k := range s {
		if EnvName(k) == name {
			return k, true
		}
	}
	return "", false
}

// isSection reports whether prefix is a section ("nats", "nats.tls").
func (s ConfigSchema) isSection(prefix string) bool {
	for k := range s {
		if strings.HasPrefix(k, prefix+".") {
			return true
		}
	}
	return false
}

// Effective computes the configuration a container gets: the defaults, then
// the config file (YAML), then its FALBRIDGE_* environment variables, the
// way falbridge layers them. Unknown keys and unknown FALBRIDGE_* variables
// are errors, as they are for falbridge. A variable set from a Secret or
// field reference counts as set, with the value "<valueFrom>".
func (s ConfigSchema) Effective(file []byte, env []corev1.EnvVar) (map[string]string, []error) {
	eff := maps.Clone(map[string]string(s))
	var errs []error
	var raw map[string]any
	if err := StrictUnmarshal(file, &raw); err != nil {
		return eff, []error{fmt.Errorf("config file: %w", err)}
	}
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v, key := m[k], prefix+k
			_, known := s[key]
			sub, isMap := v.(map[string]any)
			switch {
			case known:
				if v != nil { // null keeps the default
					eff[key] = scalarString(v)
				}
			case isMap && s.isSection(key):
				walk(sub, key+".")
			default:
				errs = append(errs, fmt.Errorf("config file: unknown key %q (falbridge refuses to start)", key))
			}
		}
	}
	walk(raw, "")
	for _, e := range env {
		if !strings.HasPrefix(e.Name, EnvPrefix) || e.Name == FileEnv {
			continue
		}
		key, ok := s.KeyForEnv(e.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("env %s names no config key (falbridge refuses to start)", e.Name))
			continue
		}
		if e.ValueFrom != nil {
			eff[key] = "<valueFrom>"
		} else {
			eff[key] = e.Value
		}
	}
	return eff, errs
}

// scalarString renders a YAML value the way it reads: 1048576, not 1.048576e+06.
func scalarString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}
