package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable that sets a key:
// FALBRIDGE_ + the key upper-cased with dots as underscores.
const EnvPrefix = "FALBRIDGE_"

// FileEnv names the config file when [LoadOptions].File is empty. It is not a
// key.
const FileEnv = "FALBRIDGE_CONFIG"

// kind is the type of a key's value.
type kind int

const (
	kindString kind = iota
	kindSecret
	kindBool
	kindInt
	kindInt64
	kindDuration
	kindIntMap
	kindStringList
)

// keyInfo describes one leaf key of Config.
type keyInfo struct {
	key   string // dotted koanf key
	env   string // environment variable
	kind  kind
	index []int // field index path in Config
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[Secret]()
	intMapType   = reflect.TypeFor[map[string]int]()
	listType     = reflect.TypeFor[[]string]()

	// schema lists every leaf key in struct order.
	schema []*keyInfo
	// byKey indexes schema by key, byEnv by environment variable.
	byKey = map[string]*keyInfo{}
	byEnv = map[string]*keyInfo{}
	// sections holds the keys of nested structs ("nats", "nats.tls").
	sections = map[string]bool{}
)

func init() {
	walkType(reflect.TypeFor[Config](), "", nil)
}

func walkType(t reflect.Type, prefix string, index []int) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("koanf")
		if name == "" {
			panic(fmt.Sprintf("config: field %s.%s has no koanf tag", t.Name(), f.Name))
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		var k kind
		switch {
		case f.Type == durationType:
			k = kindDuration
		case f.Type == secretType:
			k = kindSecret
		case f.Type == intMapType:
			k = kindIntMap
		case f.Type == listType:
			k = kindStringList
		case f.Type.Kind() == reflect.Struct:
			sections[key] = true
			walkType(f.Type, key, idx)
			continue
		case f.Type.Kind() == reflect.String:
			k = kindString
		case f.Type.Kind() == reflect.Bool:
			k = kindBool
		case f.Type.Kind() == reflect.Int:
			k = kindInt
		case f.Type.Kind() == reflect.Int64:
			k = kindInt64
		default:
			panic(fmt.Sprintf("config: key %s has unsupported type %s", key, f.Type))
		}
		ki := &keyInfo{key: key, env: EnvName(key), kind: k, index: idx}
		if _, dup := byEnv[ki.env]; dup || ki.env == FileEnv {
			panic(fmt.Sprintf("config: environment variable %s of key %s is ambiguous", ki.env, key))
		}
		schema = append(schema, ki)
		byKey[key] = ki
		byEnv[ki.env] = ki
	}
}

// Keys returns every key, dotted, in the order of the Config struct.
func Keys() []string {
	out := make([]string, len(schema))
	for i, ki := range schema {
		out[i] = ki.key
	}
	return out
}

// EnvName returns the environment variable of key: "webhook.public_url" →
// "FALBRIDGE_WEBHOOK_PUBLIC_URL".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// value returns the field of key ki in c.
func (ki *keyInfo) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(ki.index)
}

// convert turns a value read from YAML, the environment or a flag into the
// key's Go type, or returns a message saying what was expected.
func (ki *keyInfo) convert(v any) (any, string) {
	switch ki.kind {
	case kindString:
		if s, ok := asString(v); ok {
			return s, ""
		}
		return nil, "expected a string, got " + describe(v) + " (quote it)"
	case kindSecret:
		if s, ok := asString(v); ok {
			return Secret(s), ""
		}
		return nil, "expected a string, got a " + typeName(v) + " (quote it)"
	case kindBool:
		switch b := v.(type) {
		case bool:
			return b, ""
		case string:
			if p, err := strconv.ParseBool(strings.TrimSpace(b)); err == nil {
				return p, ""
			}
		}
		return nil, "expected true or false, got " + describe(v)
	case kindInt:
		n, ok := asInt(v, strconv.IntSize)
		if !ok {
			return nil, "expected an integer, got " + describe(v)
		}
		return int(n), ""
	case kindInt64:
		n, ok := asInt(v, 64)
		if !ok {
			return nil, "expected an integer, got " + describe(v)
		}
		return n, ""
	case kindDuration:
		switch d := v.(type) {
		case time.Duration:
			return d, ""
		case string:
			p, err := time.ParseDuration(strings.TrimSpace(d))
			if err == nil {
				return p, ""
			}
		default:
			if n, ok := asInt(v, 64); ok && n == 0 {
				return time.Duration(0), ""
			}
		}
		return nil, `expected a duration such as "30s", "5m" or "1h30m", got ` + describe(v)
	case kindIntMap:
		return convertIntMap(v)
	case kindStringList:
		return convertStringList(v)
	}
	return nil, "unsupported type"
}

// convertStringList accepts a YAML list of strings or one comma-separated
// string (environment, flags); entries are trimmed and empty ones dropped,
// so "" is the empty list. The result is never nil.
func convertStringList(v any) (any, string) {
	out := []string{}
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	switch l := v.(type) {
	case []string:
		for _, s := range l {
			add(s)
		}
		return out, ""
	case []any:
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Sprintf("entry %d: expected a string, got %s (quote it)", i, describe(e))
			}
			add(s)
		}
		return out, ""
	case string:
		for s := range strings.SplitSeq(l, ",") {
			add(s)
		}
		return out, ""
	}
	return nil, "expected a list of strings (or \"a,b\"), got " + describe(v)
}

func convertIntMap(v any) (any, string) {
	out := map[string]int{}
	switch m := v.(type) {
	case map[string]int:
		for k, n := range m {
			out[k] = n
		}
		return out, ""
	case map[string]any:
		for _, k := range sortedKeys(m) {
			n, ok := asInt(m[k], strconv.IntSize)
			if !ok {
				return nil, fmt.Sprintf("model %q: expected an integer, got %s", k, describe(m[k]))
			}
			out[k] = int(n)
		}
		return out, ""
	case string:
		for entry := range strings.SplitSeq(m, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			i := strings.LastIndex(entry, "=")
			if i <= 0 {
				return nil, fmt.Sprintf("expected model=n[,model=n…], got entry %q", entry)
			}
			model, num := strings.TrimSpace(entry[:i]), strings.TrimSpace(entry[i+1:])
			n, err := strconv.ParseInt(num, 10, strconv.IntSize)
			if err != nil || model == "" {
				return nil, fmt.Sprintf("expected model=n[,model=n…], got entry %q", entry)
			}
			out[model] = int(n)
		}
		return out, ""
	}
	return nil, "expected a mapping of model id to integer (or \"model=n,model2=m\"), got " + describe(v)
}

func asString(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case Secret:
		return string(s), true
	}
	return "", false
}

// asInt accepts Go integers, integral floats and decimal strings that fit in
// bits.
func asInt(v any, bits int) (int64, bool) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if bits == 32 {
		lo, hi = math.MinInt32, math.MaxInt32
	}
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, false
		}
		n = int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		n = int64(x)
	case float32:
		return asInt(float64(x), bits)
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		n = int64(x)
	case string:
		p, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, false
		}
		n = p
	default:
		return 0, false
	}
	if n < lo || n > hi {
		return 0, false
	}
	return n, true
}

// describe renders a rejected value for an error message. Strings are quoted.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 64 {
			x = x[:64] + "…"
		}
		return strconv.Quote(x)
	case nil:
		return "null"
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case time.Duration:
		return formatDuration(x)
	}
	s := fmt.Sprint(v)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// typeName names v's YAML type without showing it (for secrets).
func typeName(v any) string {
	switch v.(type) {
	case map[string]any, map[any]any:
		return "mapping"
	case []any:
		return "list"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case float32, float64:
		return "number"
	}
	if _, ok := asInt(v, 64); ok {
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// formatDuration is time.Duration.String without zero tails: "2m", "168h",
// "1h30m", "500ms".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// suggest returns the known name closest to name, or "" when none is close.
func suggest(name string, known []string) string {
	best, bestDist := "", 4
	for _, k := range known {
		if d := distance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		// Same last segment in another section: "workers" → "limits.workers".
		last := name[strings.LastIndex(name, ".")+1:]
		for _, k := range known {
			if k[strings.LastIndex(k, ".")+1:] == last {
				return k
			}
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
