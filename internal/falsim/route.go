package falsim

import (
	"net/http"
	"strings"
)

// routeKind names what a request path addresses.
type routeKind uint8

const (
	routeNotFound routeKind = iota
	routeMethodNotAllowed
	routeSubmit
	routeStatus
	routeStatusStream
	routeResult
	routeCancel
	routeRun
	routeRunStream
	routeJWKS
	routeFiles
	routeStats
	routeReset
	routeFaults
	routeJWKSAlpha
	routePricing
	routeSimRequest
)

// route is a parsed request path.
type route struct {
	kind routeKind
	// model is the full endpoint id (submit, run, stream).
	model string
	// app is the base app id (queue reads; also set for submit and run).
	app string
	// requestID is the {rid} of queue reads.
	requestID string
	// file is the path below /files/.
	file string
	// allow lists the methods the path accepts, for 405 answers.
	allow string
}

// namespaces are the first segments that make an app id three segments long
// (fal-protocol §2.1).
func isNamespace(s string) bool { return s == "workflows" || s == "comfy" }

// appSegments is the number of segments of the base app id of an endpoint id
// whose first segment is first.
func appSegments(first string) int {
	if isNamespace(first) {
		return 3
	}
	return 2
}

// parseRoute maps a method and URL path to a route. It is pure and total:
// every input gives a route, so it is the fuzz target for the URL layout.
//
// A trailing slash is ignored (fal's old SDK sends one). Model ids contain
// slashes, so the layout is told apart by segments: a "requests" segment
// right after the base app id marks the queue-read paths (for GET and PUT;
// a POST is always a submit, since endpoint paths are arbitrary).
func parseRoute(method, path string) route {
	p := strings.TrimPrefix(path, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return route{kind: routeNotFound}
	}
	segs := strings.Split(p, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return route{kind: routeNotFound}
		}
	}
	switch segs[0] {
	case "_sim":
		if len(segs) == 3 && segs[1] == "requests" {
			return methods(method, route{kind: routeSimRequest, requestID: segs[2]}, http.MethodGet)
		}
		if len(segs) != 2 {
			return route{kind: routeNotFound}
		}
		switch segs[1] {
		case "stats":
			return methods(method, route{kind: routeStats}, http.MethodGet)
		case "reset":
			return methods(method, route{kind: routeReset}, http.MethodPost)
		case "faults":
			return methods(method, route{kind: routeFaults}, http.MethodGet, http.MethodPut)
		}
		return route{kind: routeNotFound}
	case "alpha":
		// rest.alpha.fal.ai's key set, served under /alpha on one listener.
		if len(segs) == 3 && segs[1] == ".well-known" && segs[2] == "jwks.json" {
			return methods(method, route{kind: routeJWKSAlpha}, http.MethodGet)
		}
	case "v1":
		// The Platform API (api.fal.ai/v1).
		if len(segs) == 3 && segs[1] == "models" && segs[2] == "pricing" {
			return methods(method, route{kind: routePricing}, http.MethodGet)
		}
	case ".well-known":
		if len(segs) == 2 && segs[1] == "jwks.json" {
			return methods(method, route{kind: routeJWKS}, http.MethodGet)
		}
		return route{kind: routeNotFound}
	case "files":
		if len(segs) < 2 {
			return route{kind: routeNotFound}
		}
		return methods(method, route{kind: routeFiles, file: strings.Join(segs[1:], "/")}, http.MethodGet)
	case "run":
		ids := segs[1:]
		if n := len(ids); n > 0 && ids[n-1] == "stream" {
			if app, ok := endpointApp(ids[:n-1]); ok {
				return methods(method, route{kind: routeRunStream, model: strings.Join(ids[:n-1], "/"), app: app}, http.MethodPost)
			}
		}
		model, app, ok := normaliseEndpoint(ids)
		if !ok {
			return route{kind: routeNotFound}
		}
		return methods(method, route{kind: routeRun, model: model, app: app}, http.MethodPost)
	}

	n := appSegments(segs[0])
	if method != http.MethodPost && len(segs) >= n+2 && segs[n] == "requests" {
		r := route{app: strings.Join(segs[:n], "/"), requestID: segs[n+1]}
		switch rest := segs[n+2:]; {
		case len(rest) == 0:
			r.kind = routeResult
			return methods(method, r, http.MethodGet)
		case len(rest) == 1 && rest[0] == "status":
			r.kind = routeStatus
			return methods(method, r, http.MethodGet)
		case len(rest) == 2 && rest[0] == "status" && rest[1] == "stream":
			r.kind = routeStatusStream
			return methods(method, r, http.MethodGet)
		case len(rest) == 1 && rest[0] == "cancel":
			r.kind = routeCancel
			return methods(method, r, http.MethodPut)
		}
		return route{kind: routeNotFound}
	}
	model, app, ok := normaliseEndpoint(segs)
	if !ok {
		return route{kind: routeNotFound}
	}
	return methods(method, route{kind: routeSubmit, model: model, app: app}, http.MethodPost)
}

// methods returns r if method is one of allowed (HEAD counts as GET), else a
// 405 route listing them.
func methods(method string, r route, allowed ...string) route {
	for _, m := range allowed {
		if method == m || (method == http.MethodHead && m == http.MethodGet) {
			return r
		}
	}
	return route{kind: routeMethodNotAllowed, allow: strings.Join(allowed, ", ")}
}

// endpointApp returns the base app id of an endpoint id given as segments,
// and whether the segments form an endpoint id at all.
func endpointApp(segs []string) (string, bool) {
	if len(segs) == 0 {
		return "", false
	}
	n := appSegments(segs[0])
	if len(segs) < n {
		return "", false
	}
	for _, s := range segs {
		if !validSegment(s) {
			return "", false
		}
	}
	return strings.Join(segs[:n], "/"), true
}

// normaliseEndpoint turns path segments into a full endpoint id and its base
// app id, rewriting the legacy single-segment "123-app" form to "123/app"
// as fal's clients do.
func normaliseEndpoint(segs []string) (model, app string, ok bool) {
	if len(segs) == 1 {
		owner, alias, found := strings.Cut(segs[0], "-")
		if !found || owner == "" || alias == "" || !allDigits(owner) || !validSegment(alias) {
			return "", "", false
		}
		id := owner + "/" + alias
		return id, id, true
	}
	app, ok = endpointApp(segs)
	if !ok {
		return "", "", false
	}
	return strings.Join(segs, "/"), app, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// validSegment accepts the characters fal uses in owners, aliases and
// endpoint paths.
func validSegment(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
