// Package subject is the NATS subject grammar falbridge's packages share:
// whether a string is a valid subject (or pattern), and whether two subjects
// or patterns can match a common subject. One copy, so that the config that
// names subjects and the publisher that uses them cannot disagree.
package subject

import (
	"strings"
	"unicode"
)

// Valid reports whether s is a valid NATS subject: non-empty dot-separated
// tokens without white space or control characters. With wildcards, a token
// may be "*", and the last token may be ">"; without, neither may appear.
func Valid(s string, wildcards bool) bool {
	if s == "" {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		if t == "" || strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return false
		}
		if !strings.ContainsAny(t, "*>") {
			continue
		}
		if !wildcards {
			return false
		}
		switch {
		case t == "*":
		case t == ">" && i == len(tokens)-1:
		default:
			return false
		}
	}
	return true
}

// Overlap reports whether some subject matches both a and b, each a valid
// subject or pattern. For a pattern and a literal subject, it is "the
// pattern matches the subject".
func Overlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i == len(at) || i == len(bt):
			return false
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
			continue
		default:
			return false
		}
	}
}

// Within reports whether every subject that s (a valid subject or pattern)
// matches lies at or under prefix (a valid subject or pattern read as a
// prefix): prefix "fal.results" holds "fal.results", "fal.results.x" and
// "fal.results.>"; prefix "fal.*" holds "fal.x.y" and "fal.>"; neither holds
// "fal" or ">".
func Within(prefix, s string) bool {
	pt, st := strings.Split(prefix, "."), strings.Split(s, ".")
	for i, p := range pt {
		switch {
		case p == ">":
			return i < len(st)
		case i >= len(st):
			return false
		case st[i] == ">":
			// s matches one or more tokens here; only a last "*" of prefix
			// (read as a prefix) holds them all.
			return p == "*" && i == len(pt)-1
		case p == "*" || p == st[i]:
		default:
			return false
		}
	}
	return true
}

// ServerOwned reports whether subject s (or every subject a pattern s
// matches) belongs to the NATS server or to request-reply plumbing: a first
// token starting with "$" ($JS, $KV, $SYS, $O, $MQTT … APIs and stores) or
// equal to "_INBOX" (reply subjects). Nothing outside falbridge's control may
// make it publish there.
func ServerOwned(s string) bool {
	first, _, _ := strings.Cut(s, ".")
	return strings.HasPrefix(first, "$") || first == "_INBOX"
}
