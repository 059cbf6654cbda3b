package deploycheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Metric is one Prometheus metric falbridge exports.
type Metric struct {
	Name string
	// Type is counter, gauge or histogram.
	Type   string
	Labels []string
}

// Labels every scraped series may carry besides its own.
var targetLabels = []string{"instance", "job"}

var (
	metricRe      = regexp.MustCompile(`\b(?:falbridge|go|process)_[a-zA-Z0-9_]*`)
	selectorRe    = regexp.MustCompile(`\b((?:falbridge|go|process)_[a-zA-Z0-9_]*)\{([^}]*)\}`)
	groupingRe    = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
	matcherRe     = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	joinTailRe    = regexp.MustCompile(`(?:and|or|unless)\s+on\s*\([^)]*\)\s*$`)
	rateTailRe    = regexp.MustCompile(`\b(?:rate|irate|increase)\(\s*$`)
	labelValuesRe = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
)

// CheckDashboard checks a Grafana dashboard's JSON: it parses, uses a
// Prometheus data source variable everywhere, lays panels out without
// overlap, and its queries name only metrics (and their labels) from
// metrics, using each falbridge_* one at least once, counters through
// rate/increase and histograms through histogram_quantile.
func CheckDashboard(data []byte, metrics []Metric) error {
	var errs []error
	errorf := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var d struct {
		UID           string            `json:"uid"`
		Title         string            `json:"title"`
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("dashboard JSON: %w", err)
	}
	if d.UID == "" || d.Title == "" {
		errorf("dashboard: uid and title are required")
	}
	if d.SchemaVersion < 36 {
		errorf("dashboard: schemaVersion %d, want ≥ 36", d.SchemaVersion)
	}

	// The data source variable, and the queries of query variables.
	var dsVar string
	var exprs []string
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) == nil && q == "prometheus" {
				dsVar = v.Name
			}
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				_ = json.Unmarshal(v.Query, &q.Query)
			}
			exprs = append(exprs, q.Query)
		}
	}
	if dsVar == "" {
		errorf("dashboard: no Prometheus data source variable")
	}
	okDS := func(raw json.RawMessage) bool {
		var ds struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		}
		return json.Unmarshal(raw, &ds) == nil && ds.Type == "prometheus" && (ds.UID == "${"+dsVar+"}" || ds.UID == "$"+dsVar)
	}

	type panel struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		GridPos    struct{ X, Y, W, H int }
		Panels     []json.RawMessage `json:"panels"`
		Targets    []struct {
			RefID      string          `json:"refId"`
			Expr       string          `json:"expr"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"targets"`
	}
	var all []panel
	var flatten func(raws []json.RawMessage)
	flatten = func(raws []json.RawMessage) {
		for _, r := range raws {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				errorf("panel: %v", err)
				continue
			}
			all = append(all, p)
			flatten(p.Panels)
		}
	}
	flatten(d.Panels)
	ids := map[int]bool{}
	for i, p := range all {
		if ids[p.ID] {
			errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, q := range all[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				errorf("panels %q and %q overlap", q.Title, p.Title)
			}
		}
		if p.Type == "row" {
			continue
		}
		if !okDS(p.Datasource) {
			errorf("panel %q: datasource must be the ${%s} variable", p.Title, dsVar)
		}
		if len(p.Targets) == 0 {
			errorf("panel %q: no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, t := range p.Targets {
			if t.Expr == "" || t.RefID == "" || refs[t.RefID] {
				errorf("panel %q: each query needs an expr and its own refId", p.Title)
			}
			refs[t.RefID] = true
			if !okDS(t.Datasource) {
				errorf("panel %q query %s: datasource must be the ${%s} variable", p.Title, t.RefID, dsVar)
			}
			exprs = append(exprs, t.Expr)
		}
	}

	used := map[string]bool{}
	for _, e := range exprs {
		errs = append(errs, checkExpr(e, metrics, used)...)
	}
	for _, m := range metrics {
		if strings.HasPrefix(m.Name, "falbridge_") && !used[m.Name] {
			errorf("metric %s is on no panel", m.Name)
		}
	}
	return errors.Join(errs...)
}

// resolveMetric finds the metric a series name belongs to (histograms
// export _bucket, _sum and _count series).
func resolveMetric(name string, metrics []Metric) (Metric, string, bool) {
	for _, m := range metrics {
		if m.Name == name {
			return m, "", true
		}
		if m.Type == "histogram" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if name == m.Name+suf {
					return m, suf, true
				}
			}
		}
	}
	return Metric{}, "", false
}

func checkExpr(expr string, metrics []Metric, used map[string]bool) []error {
	var errs []error
	errorf := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("query %q: %s", expr, fmt.Sprintf(format, args...)))
	}
	labelsInExpr := slices.Clone(targetLabels)
	// A variable query: label_values(metric, label).
	if lv := labelValuesRe.FindStringSubmatch(expr); lv != nil {
		m, suffix, ok := resolveMetric(lv[1], metrics)
		switch {
		case !ok:
			errorf("unknown metric %s", lv[1])
		case !slices.Contains(append(slices.Clone(targetLabels), m.Labels...), lv[2]):
			errorf("%s has no label %q", lv[1], lv[2])
		case m.Type == "histogram" && suffix == "":
			errorf("histogram %s has no series of that name: use %s_bucket, _sum or _count", lv[1], lv[1])
		}
		return errs
	}
	for _, loc := range metricRe.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		m, suffix, ok := resolveMetric(name, metrics)
		if !ok {
			errorf("unknown metric %s", name)
			continue
		}
		used[m.Name] = true
		labelsInExpr = append(labelsInExpr, m.Labels...)
		before := expr[:loc[0]]
		switch {
		case suffix == "_bucket":
			labelsInExpr = append(labelsInExpr, "le")
			if !strings.Contains(expr, "histogram_quantile(") {
				errorf("%s outside histogram_quantile", name)
			}
		case m.Type == "histogram" && suffix == "":
			errorf("histogram %s has no series of that name: use %s_bucket, _sum or _count", name, name)
		case m.Type == "counter" && !rateTailRe.MatchString(before) && !joinTailRe.MatchString(before):
			errorf("counter %s must be used through rate() or increase()", name)
		case m.Type == "gauge" && rateTailRe.MatchString(before):
			errorf("gauge %s inside rate()/increase()", name)
		}
	}
	if strings.Contains(expr, "histogram_quantile(") && !strings.Contains(expr, "_bucket") {
		errorf("histogram_quantile without a _bucket series")
	}
	for _, sm := range selectorRe.FindAllStringSubmatch(expr, -1) {
		m, suffix, ok := resolveMetric(sm[1], metrics)
		if !ok {
			continue
		}
		allowed := append(slices.Clone(targetLabels), m.Labels...)
		if suffix == "_bucket" {
			allowed = append(allowed, "le")
		}
		for _, matcher := range strings.Split(sm[2], ",") {
			if strings.TrimSpace(matcher) == "" {
				continue
			}
			lm := matcherRe.FindStringSubmatch(matcher)
			if lm == nil {
				errorf("cannot read matcher %q", matcher)
				continue
			}
			if !slices.Contains(allowed, lm[1]) {
				errorf("%s has no label %q (labels: %s)", sm[1], lm[1], strings.Join(allowed, ", "))
			}
		}
	}
	for _, g := range groupingRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(labelsInExpr, l) {
				errorf("groups by %q, a label none of its metrics has", l)
			}
		}
	}
	return errs
}
