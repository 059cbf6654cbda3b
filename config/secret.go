package config

import (
	"fmt"
	"log/slog"
	"strconv"
)

// redacted is what every printed form of a set Secret shows.
const redacted = "****"

// Secret is a string that never shows itself: String, GoString, every fmt verb,
// MarshalText, MarshalJSON, MarshalYAML and LogValue give "****" when it is set
// and "" when it is empty. [Secret.Reveal] returns the value. It unmarshals
// from a plain string (JSON, YAML, text, koanf).
//
// Used for fal.key, nats.password and nats.token.
type Secret string

// Reveal returns the secret's value. Call it only where the value is used
// (an Authorization header, a NATS option), never to print it.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether the secret is non-empty.
func (s Secret) IsSet() bool { return s != "" }

// String returns "****", or "" when s is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns the redacted form quoted, as %#v would print a string.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %q,
// %x …) prints the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		_, _ = fmt.Fprint(f, strconv.Quote(s.String()))
	case 'v':
		if f.Flag('#') {
			_, _ = fmt.Fprint(f, s.GoString())
			return
		}
		_, _ = fmt.Fprint(f, s.String())
	default:
		_, _ = fmt.Fprint(f, s.String())
	}
}

// MarshalText returns the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText sets the secret to text, unchanged.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}

// MarshalJSON returns the redacted form as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalYAML returns the redacted form (it implements yaml.Marshaler).
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue implements slog.LogValuer with the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

var (
	_ fmt.Stringer   = Secret("")
	_ fmt.GoStringer = Secret("")
	_ fmt.Formatter  = Secret("")
	_ slog.LogValuer = Secret("")
)
