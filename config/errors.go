package config

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrUnknownKey is wrapped by the [FieldError] of a key in the file, a
	// FALBRIDGE_* environment variable or a value that names no key.
	ErrUnknownKey = errors.New("unknown key")

	// ErrInvalidValue is wrapped by the [FieldError] of a value of the wrong
	// type (from the file, the environment or a flag) and of every problem
	// [Config.Validate] finds.
	ErrInvalidValue = errors.New("invalid value")
)

// FieldError is one problem with one key. Its message starts with the key:
//
//	limits.workers: expected an integer, got "abc" (env FALBRIDGE_LIMITS_WORKERS)
//	limits.workers: must be ≥ 1 (got 0)
//
// It wraps [ErrUnknownKey] or [ErrInvalidValue]; use errors.As to get it from
// the errors [Load] and [Config.Validate] return.
type FieldError struct {
	// Key is the dotted key ("limits.workers"), or for an unknown environment
	// variable the variable's name.
	Key string
	// Message says what is wrong.
	Message string
	// Source is where the value came from ("file config.yaml",
	// "env FALBRIDGE_LIMITS_WORKERS", "flag --limits.workers"); empty for
	// problems found by Validate.
	Source string
	// Err is ErrUnknownKey or ErrInvalidValue.
	Err error
}

// Error returns "<key>: <message>[ (<source>)]".
func (e *FieldError) Error() string {
	if e.Source == "" {
		return e.Key + ": " + e.Message
	}
	return e.Key + ": " + e.Message + " (" + e.Source + ")"
}

// Unwrap returns Err.
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(key, format string, args ...any) error {
	return &FieldError{Key: key, Message: fmt.Sprintf(format, args...), Err: ErrInvalidValue}
}

// loadError is what Load returns for bad configuration: "config: " and the
// problems, one a line when there are several.
type loadError struct {
	errs []error
}

func newLoadError(errs []error) error {
	var flat []error
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			flat = append(flat, j.Unwrap()...)
			continue
		}
		flat = append(flat, err)
	}
	return &loadError{errs: flat}
}

// Error returns "config: <problem>" or "config: N problems:" and one a line.
func (e *loadError) Error() string {
	if len(e.errs) == 1 {
		return "config: " + e.errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "config: %d problems:", len(e.errs))
	for _, err := range e.errs {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *loadError) Unwrap() []error { return e.errs }
