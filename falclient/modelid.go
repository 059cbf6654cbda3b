package falclient

import (
	"fmt"
	"strings"
)

// Namespaces that prefix an owner in an endpoint id (fal-protocol §2.1).
const (
	NamespaceWorkflows = "workflows"
	NamespaceComfy     = "comfy"
)

// maxModelIDLen bounds the length of an endpoint id.
const maxModelIDLen = 512

// ModelID is a parsed fal endpoint id, "[namespace/]owner/alias[/path]"
// (fal-protocol §2.1), e.g. fal-ai/flux/dev = {Owner: "fal-ai", Alias: "flux",
// Path: "dev"}. The zero value is not a valid id.
type ModelID struct {
	Namespace string // "workflows", "comfy" or ""
	Owner     string // e.g. "fal-ai", or the numeric user id of a legacy id
	Alias     string // the app name, e.g. "flux"
	Path      string // the variant/path below the app, e.g. "dev" or "v1.6/standard/text-to-video"; may be ""
}

// ParseModelID parses an endpoint id the way fal's official clients do: an
// id without a slash must be the legacy "<numeric user id>-<app>" form and is
// rewritten to "<id>/<app>"; a first segment "workflows" or "comfy" is a
// namespace followed by owner and alias; everything after the alias is the
// path.
//
// Malformed ids return an error wrapping [ErrInvalidModelID] that quotes s:
// an empty id, one segment that is not a legacy id, a leading, trailing or
// doubled slash, "." or ".." segments (any ".."), whitespace, control or
// non-ASCII characters, or any of "?#%\" and other characters that would need
// escaping in a URL path. Ids longer than 512 bytes are rejected too.
func ParseModelID(s string) (ModelID, error) {
	bad := func(reason string) (ModelID, error) {
		return ModelID{}, fmt.Errorf("%w %q: %s", ErrInvalidModelID, s, reason)
	}
	switch {
	case s == "":
		return bad("empty")
	case len(s) > maxModelIDLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxModelIDLen))
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return bad("leading or trailing slash")
	case strings.Contains(s, ".."):
		return bad(`contains ".."`)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '/' && !isPathChar(c) {
			return bad(fmt.Sprintf("invalid character %q at offset %d", rune(c), i))
		}
	}
	if !strings.Contains(s, "/") {
		owner, app, ok := parseLegacyID(s)
		if !ok {
			return bad("must be in the format <owner>/<alias>[/<path>]")
		}
		return ModelID{Owner: owner, Alias: app}, nil
	}
	parts := strings.Split(s, "/")
	for _, p := range parts {
		switch p {
		case "":
			return bad("empty segment")
		case ".":
			return bad(`"." segment`)
		}
	}
	var m ModelID
	if parts[0] == NamespaceWorkflows || parts[0] == NamespaceComfy {
		if len(parts) < 3 {
			return bad(fmt.Sprintf("namespace %q needs <owner>/<alias> after it", parts[0]))
		}
		m.Namespace, parts = parts[0], parts[1:]
	}
	m.Owner, m.Alias = parts[0], parts[1]
	m.Path = strings.Join(parts[2:], "/")
	return m, nil
}

// parseLegacyID matches ^([0-9]+)-([a-zA-Z0-9-]+)$.
func parseLegacyID(s string) (owner, app string, ok bool) {
	i := strings.IndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	owner, app = s[:i], s[i+1:]
	for j := 0; j < len(owner); j++ {
		if owner[j] < '0' || owner[j] > '9' {
			return "", "", false
		}
	}
	for j := 0; j < len(app); j++ {
		c := app[j]
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "", "", false
		}
	}
	return owner, app, true
}

// isPathChar reports whether c may appear unescaped in a URL path segment
// (RFC 3986 pchar minus pct-encoding): unreserved, sub-delims, ':' and '@'.
func isPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

// String returns the full endpoint id, "[namespace/]owner/alias[/path]". A
// legacy id comes back in its slash form ("12345-my-app" → "12345/my-app").
// Submit and run URLs use it.
func (m ModelID) String() string {
	s := m.BaseAppID()
	if m.Path != "" {
		s += "/" + m.Path
	}
	return s
}

// BaseAppID returns "[namespace/]owner/alias", the id without its path.
// Status, status-stream, result and cancel URLs use it.
func (m ModelID) BaseAppID() string {
	s := m.Owner + "/" + m.Alias
	if m.Namespace != "" {
		s = m.Namespace + "/" + s
	}
	return s
}
