package config

import (
	"fmt"
	"maps"
	"os"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	kmaps "github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// LoadOptions says where [Load] reads configuration from.
type LoadOptions struct {
	// File is a YAML config file. Empty means the file named by
	// FALBRIDGE_CONFIG (looked up in Environ), or none.
	File string
	// Flags holds flags named by the dotted keys ("nats.url"), usually
	// registered with [RegisterFlags] and parsed. Only flags the user set
	// (Changed) apply; flags that name no key are ignored. Nil means none.
	Flags *pflag.FlagSet
	// Environ is the environment as "NAME=value" strings. Nil means
	// os.Environ(); an empty non-nil slice means no environment.
	Environ []string
	// Base is the configuration the sources are layered on. Nil means
	// [Default]().
	Base *Config
}

// Load builds a Config from, in increasing precedence: Base (default
// [Default]), the YAML file, the environment and the flags, then validates it.
//
// The file's keys are nested mappings ("limits: {workers: 4}"); a null value
// leaves the key as it was. The environment sets key k with FALBRIDGE_K, k
// upper-cased with dots as underscores (FALBRIDGE_WEBHOOK_PUBLIC_URL →
// webhook.public_url); FALBRIDGE_CONFIG names the file. FAL_KEY, or FAL_KEY_ID
// and FAL_KEY_SECRET joined by ":", set fal.key unless FALBRIDGE_FAL_KEY is set.
// Durations are Go duration strings ("30s"); integers may be numbers or decimal
// strings; limits.model_limits is a mapping in YAML and "model=n,model2=m" in
// the environment and flags, and replaces the map of lower layers.
//
// An unknown key in the file, an unknown FALBRIDGE_* variable and a value of
// the wrong type are errors naming the key (a [FieldError] wrapping
// [ErrUnknownKey] or [ErrInvalidValue]); all of them are reported together, as
// are the problems [Config.Validate] finds. The error's text starts with
// "config: ". A file that cannot be read or parsed is an error naming the file.
func Load(o LoadOptions) (*Config, error) {
	environ := o.Environ
	if environ == nil {
		environ = os.Environ()
	}
	base := Default()
	if o.Base != nil {
		base = *o.Base
		base.Limits.ModelLimits = maps.Clone(base.Limits.ModelLimits)
		base.Limits.PendingModelLimits = maps.Clone(base.Limits.PendingModelLimits)
	}
	path := o.File
	if path == "" {
		path = lookupEnv(environ, FileEnv)
	}

	var data []byte
	if path != "" {
		var err error
		data, err = file.Provider(path).ReadBytes()
		if err != nil {
			return nil, fmt.Errorf("config: read file: %w", err)
		}
	}
	return build(base, path, data, environ, o.Flags)
}

// build is Load after the file (if any, path != "") has been read.
func build(base Config, path string, data []byte, environ []string, flags *pflag.FlagSet) (*Config, error) {
	ko := koanf.New(".")
	if err := ko.Load(structs.Provider(base, "koanf"), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}

	var errs []error
	if path != "" {
		m, ferrs, err := parseFile(path, data)
		if err != nil {
			return nil, err
		}
		errs = append(errs, ferrs...)
		if err := ko.Load(confmap.Provider(m, ""), nil); err != nil {
			return nil, fmt.Errorf("config: file %s: %w", path, err)
		}
	}

	env, eerrs := parseEnv(environ)
	errs = append(errs, eerrs...)
	if err := ko.Load(confmap.Provider(env, "."), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}

	if flags != nil {
		p := posflag.ProviderWithFlag(flags, ".", ko, func(f *pflag.Flag) (string, any) {
			ki, ok := byKey[f.Name]
			if !ok || !f.Changed {
				return "", nil
			}
			v, msg := ki.convert(posflag.FlagVal(flags, f))
			if msg != "" {
				errs = append(errs, &FieldError{Key: ki.key, Message: msg, Source: "flag --" + f.Name, Err: ErrInvalidValue})
				return "", nil
			}
			return ki.key, v
		})
		if err := ko.Load(p, nil); err != nil {
			return nil, fmt.Errorf("config: flags: %w", err)
		}
	}
	if len(errs) > 0 {
		return nil, newLoadError(errs)
	}

	var c Config
	err := ko.UnmarshalWithConf("", &c, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:  mapstructure.StringToTimeDurationHookFunc(),
			ErrorUnused: true,
			TagName:     "koanf",
		},
	})
	if err != nil {
		// Unreachable unless a provider let a value through unchecked.
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(c.Limits.ModelLimits) == 0 {
		c.Limits.ModelLimits = nil
	}
	if len(c.Limits.PendingModelLimits) == 0 {
		c.Limits.PendingModelLimits = nil
	}
	if len(c.Spend.Prices) == 0 {
		c.Spend.Prices = nil
	}
	if len(c.Spend.Budgets) == 0 {
		c.Spend.Budgets = nil
	}
	if err := c.Validate(); err != nil {
		return nil, newLoadError([]error{err})
	}
	return &c, nil
}

// parseFile parses a YAML config file into a nested map of checked values.
// err is a parse error; errs are unknown keys and values of the wrong type.
func parseFile(path string, data []byte) (m map[string]any, errs []error, err error) {
	raw, err := yaml.Parser().Unmarshal(data)
	if err != nil {
		return nil, nil, fmt.Errorf("config: file %s: %w", path, err)
	}
	kmaps.IntfaceKeysToStrings(raw)
	m = map[string]any{}
	walkFile(raw, "", "file "+path, m, &errs)
	return m, errs, nil
}

func walkFile(in map[string]any, prefix, source string, out map[string]any, errs *[]error) {
	for _, k := range sortedKeys(in) {
		v := in[k]
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if strings.Contains(k, ".") || k == "" {
			*errs = append(*errs, &FieldError{Key: key, Message: "unknown key (nest keys as mappings instead of writing them dotted)", Source: source, Err: ErrUnknownKey})
			continue
		}
		if ki, ok := byKey[key]; ok {
			if v == nil {
				continue
			}
			val, msg := ki.convert(v)
			if msg != "" {
				*errs = append(*errs, &FieldError{Key: key, Message: msg, Source: source, Err: ErrInvalidValue})
				continue
			}
			out[k] = val
			continue
		}
		if sections[key] {
			if v == nil {
				continue
			}
			sub, ok := v.(map[string]any)
			if !ok {
				*errs = append(*errs, &FieldError{Key: key, Message: "expected a mapping of keys, got " + describe(v), Source: source, Err: ErrInvalidValue})
				continue
			}
			subOut := map[string]any{}
			walkFile(sub, key, source, subOut, errs)
			if len(subOut) > 0 {
				out[k] = subOut
			}
			continue
		}
		msg := "unknown key"
		if s := suggest(key, knownNames()); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		*errs = append(*errs, &FieldError{Key: key, Message: msg, Source: source, Err: ErrUnknownKey})
	}
}

func knownNames() []string {
	out := Keys()
	for s := range sections {
		out = append(out, s)
	}
	return out
}

// parseEnv reads FALBRIDGE_* (and FAL_KEY*) variables into a flat map of
// checked values keyed by dotted key.
func parseEnv(environ []string) (map[string]any, []error) {
	out := map[string]any{}
	var errs []error
	var falKey, falKeyID, falKeySecret string
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch name {
		case "FAL_KEY":
			falKey = val
			continue
		case "FAL_KEY_ID":
			falKeyID = val
			continue
		case "FAL_KEY_SECRET":
			falKeySecret = val
			continue
		case FileEnv:
			continue
		}
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		ki, ok := byEnv[name]
		if !ok && kubernetesServiceLink(name) {
			// Kubernetes sets these for a Service named "falbridge" in the
			// pod's namespace; they are not falbridge settings.
			continue
		}
		if !ok {
			msg := "unknown environment variable, it names no key"
			envs := make([]string, 0, len(byEnv))
			for e := range byEnv {
				envs = append(envs, e)
			}
			if s := suggest(name, envs); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			errs = append(errs, &FieldError{Key: name, Message: msg, Err: ErrUnknownKey})
			continue
		}
		v, msg := ki.convert(val)
		if msg != "" {
			errs = append(errs, &FieldError{Key: ki.key, Message: msg, Source: "env " + name, Err: ErrInvalidValue})
			continue
		}
		out[ki.key] = v
	}
	if _, set := out["fal.key"]; !set {
		switch {
		case falKey != "":
			out["fal.key"] = Secret(falKey)
		case falKeyID != "" && falKeySecret != "":
			out["fal.key"] = Secret(falKeyID + ":" + falKeySecret)
		}
	}
	return out, errs
}

// kubernetesServiceLink reports whether name is one of the variables
// Kubernetes injects for a Service named "falbridge": FALBRIDGE_SERVICE_HOST,
// FALBRIDGE_SERVICE_PORT[_<port name>], FALBRIDGE_PORT and
// FALBRIDGE_PORT_<port>_<proto>[_ADDR|_PORT|_PROTO]. No config key starts
// with "service" or "port", so none of them can be a setting.
func kubernetesServiceLink(name string) bool {
	rest := strings.TrimPrefix(name, EnvPrefix)
	return rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || strings.HasPrefix(rest, "SERVICE_PORT_") ||
		rest == "PORT" || strings.HasPrefix(rest, "PORT_")
}

// lookupEnv returns the value of the last name=value in environ, or "".
func lookupEnv(environ []string, name string) string {
	var v string
	for _, kv := range environ {
		if n, val, ok := strings.Cut(kv, "="); ok && n == name {
			v = val
		}
	}
	return v
}
