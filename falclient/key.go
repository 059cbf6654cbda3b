package falclient

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Key is a fal API key, "<key id>:<key secret>". Every way of printing it
// (String, GoString, all fmt verbs, slog, JSON, text marshalling) yields a
// redacted form: the first four characters of the key id followed by
// "…:****" when the id has at least eight characters, otherwise "****" (and
// "" for an empty key). Use string(k) only to send it.
type Key string

// KeyFromEnv returns the key from the environment: FAL_KEY, or else
// FAL_KEY_ID + ":" + FAL_KEY_SECRET when both are set, or "" when neither
// is. Surrounding whitespace is trimmed.
func KeyFromEnv() Key { return keyFromLookup(os.Getenv) }

func keyFromLookup(getenv func(string) string) Key {
	if k := strings.TrimSpace(getenv("FAL_KEY")); k != "" {
		return Key(k)
	}
	id, secret := strings.TrimSpace(getenv("FAL_KEY_ID")), strings.TrimSpace(getenv("FAL_KEY_SECRET"))
	if id != "" && secret != "" {
		return Key(id + ":" + secret)
	}
	return ""
}

// Redacted returns the redacted form that String and the other printers use.
func (k Key) Redacted() string {
	if k == "" {
		return ""
	}
	id, _, ok := strings.Cut(string(k), ":")
	if ok && len(id) >= 8 {
		return id[:4] + "…:****"
	}
	return "****"
}

// String returns the redacted key.
func (k Key) String() string { return k.Redacted() }

// GoString returns the redacted key as a Go expression (for %#v).
func (k Key) GoString() string { return "falclient.Key(" + strconv.Quote(k.Redacted()) + ")" }

// Format prints the redacted key for every verb; %q quotes it and %#v uses
// GoString.
func (k Key) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(k.Redacted()))
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, k.GoString())
	default:
		fmt.Fprint(f, k.Redacted())
	}
}

// LogValue makes slog print the redacted key.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.Redacted()) }

// MarshalJSON encodes the redacted key as a JSON string.
func (k Key) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(k.Redacted())), nil }

// MarshalText returns the redacted key.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.Redacted()), nil }

// secret returns the part after the first ':' (the key secret), or the whole
// key when there is no ':'.
func (k Key) secret() string {
	if _, s, ok := strings.Cut(string(k), ":"); ok {
		return s
	}
	return string(k)
}

// validKey reports whether k can be sent in a header: printable ASCII
// without spaces, quotes or backslashes.
func validKey(k Key) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
