package console

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/publisher"
)

// row is one job in a table.
type row struct {
	ID, ModelID, Tenant, State, Outcome, RequestID string
	RetryOf, RetriedAs                             string
	ReceivedAt, At                                 time.Time
	Elapsed                                        string
	Seq                                            uint64
	Message                                        string
}

func (c *Console) rowOfTerminal(t terminal) row {
	r := row{ID: t.ID(), ModelID: t.ModelID(), At: t.At, Seq: t.Seq, Tenant: tenantOf(t.Metadata()), RetryOf: retryOf(t.Metadata())}
	if t.Result != nil {
		r.State, r.Outcome, r.RequestID, r.ReceivedAt = publisher.JobDone, "result", t.Result.RequestID, t.Result.ReceivedAt
	} else {
		r.State, r.Outcome, r.RequestID, r.Message = publisher.JobDone, string(t.Error.Code), t.Error.RequestID, t.Error.Message
	}
	if !r.ReceivedAt.IsZero() && !t.At.IsZero() {
		r.Elapsed = t.At.Sub(r.ReceivedAt).Round(time.Millisecond).String()
	}
	return r
}

func (c *Console) rowOfRecord(j publisher.JobInfo) row {
	r := row{ID: j.ID, ModelID: j.ModelID, State: j.State, Outcome: j.Outcome, RequestID: j.RequestID,
		ReceivedAt: j.ReceivedAt, Tenant: tenantOf(j.Metadata), RetryOf: retryOf(j.Metadata)}
	if !j.ReceivedAt.IsZero() {
		end := c.now()
		if !j.CompletedAt.IsZero() {
			end = j.CompletedAt
		}
		r.Elapsed = end.Sub(j.ReceivedAt).Round(time.Second).String()
	}
	return r
}

// tenantOf is metadata.tenant when the metadata is an object with a
// string tenant: falbridge has no tenant of its own yet.
func tenantOf(md json.RawMessage) string { return metaString(md, "tenant") }

// retryOf is the id of the job a console retry republished (see retry).
func retryOf(md json.RawMessage) string { return metaString(md, RetryOfKey) }

func metaString(md json.RawMessage, key string) string {
	if len(md) == 0 || md[0] != '{' {
		return ""
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(md, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[key], &s) != nil {
		return ""
	}
	return s
}

type overviewPage struct {
	page
	Windows      []throughput
	SweepPending int
	SweepAt      time.Time
	SweepKnown   bool
	ActiveWindow int
	ActiveSeen   int
	PerModel     []count
	PerTenant    []count
	Completions  []count
	Waiting      uint64 // triggers stored in the requests stream
	Records      uint64 // messages in the bucket's stream
	// Limits are the caps on jobs pending at fal, their use and the
	// budgets, from the admission record (nil when it cannot be read).
	Limits *consumer.LimitsInfo
}

type throughput struct {
	Label           string
	Results, Errors uint64
	PerMinute       string
}

type count struct {
	Name string
	N    int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := overviewPage{page: c.newPage(r, "Overview"), ActiveWindow: c.cfg.ActiveWindow}
	res, err := c.js.Stream(ctx, c.streams.Results)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	now := c.now()
	for _, win := range []struct {
		label string
		d     time.Duration
	}{{"last minute", time.Minute}, {"last 10 minutes", 10 * time.Minute}, {"last hour", time.Hour}} {
		since := now.Add(-win.d)
		nr, err := c.pendingSince(ctx, res, []string{c.subjects.ResultsPrefix + ".>"}, since)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		ne, err := c.pendingSince(ctx, res, []string{c.subjects.ErrorsPrefix + ".>"}, since)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		p.Windows = append(p.Windows, throughput{Label: win.label, Results: nr, Errors: ne,
			PerMinute: strconv.FormatFloat(float64(nr+ne)/win.d.Minutes(), 'f', 1, 64)})
	}
	p.SweepPending, p.SweepAt, p.SweepKnown = c.sweepPending(ctx)
	active, seen, err := c.activeJobs(ctx, c.cfg.ActiveWindow)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p.ActiveSeen = seen
	models, tenants := map[string]int{}, map[string]int{}
	for _, j := range active {
		models[j.ModelID]++
		tenants[cmp.Or(tenantOf(j.Metadata), "(none)")]++
	}
	p.PerModel, p.PerTenant = sortedCounts(models), sortedCounts(tenants)
	p.Completions = c.completions()
	if s, err := c.js.Stream(ctx, c.streams.Requests); err == nil {
		p.Waiting = s.CachedInfo().State.Msgs
	}
	if s, err := c.js.Stream(ctx, c.kvStream); err == nil {
		p.Records = s.CachedInfo().State.Msgs
	}
	if li, err := consumer.LookupLimits(ctx, c.js, c.streams.JobsBucket, now); err == nil {
		p.Limits = li
	} else {
		c.log.Warn("console: read the admission record", "err", err)
	}
	c.render(w, r, "overview", &p)
}

func sortedCounts(m map[string]int) []count {
	out := make([]count, 0, len(m))
	for k, n := range m {
		out = append(out, count{k, n})
	}
	slices.SortFunc(out, func(a, b count) int { return cmp.Or(b.N-a.N, cmp.Compare(a.Name, b.Name)) })
	return out
}

// completions reads falbridge_completions_total{via} from this replica's
// registry.
func (c *Console) completions() []count {
	if c.cfg.Gatherer == nil {
		return nil
	}
	mfs, err := c.cfg.Gatherer.Gather()
	if err != nil {
		return nil
	}
	var out []count
	for _, mf := range mfs {
		if mf.GetName() != "falbridge_completions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "via" {
					out = append(out, count{l.GetValue(), int(m.GetCounter().GetValue())})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b count) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

type jobsPage struct {
	page
	Active       []row
	ActiveWindow int
	Finished     []row
	Older        uint64 // the before= of the next page; 0: none
}

func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := jobsPage{page: c.newPage(r, "Jobs"), ActiveWindow: c.cfg.ActiveWindow}
	before, _ := strconv.ParseUint(r.URL.Query().Get("before"), 10, 64)
	if before == 0 {
		active, _, err := c.activeJobs(ctx, c.cfg.ActiveWindow)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, j := range active {
			p.Active = append(p.Active, c.rowOfRecord(j))
		}
	}
	msgs, err := c.tail(ctx, c.streams.Results, nil, before, c.cfg.PageSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if t, ok := c.decodeTerminal(msgs[i].Subject, msgs[i].Data, msgs[i].Seq, msgs[i].Time); ok {
			p.Finished = append(p.Finished, c.rowOfTerminal(t))
		}
	}
	if len(msgs) > 0 && msgs[0].Seq > 1 {
		p.Older = msgs[0].Seq
	}
	c.render(w, r, "jobs", &p)
}

type jobPage struct {
	page
	ID        string
	Record    *publisher.JobInfo
	Trigger   string
	Metadata  string
	RetryOf   string
	Statuses  []statusRow
	Result    *publisher.Result
	Output    string
	Media     []media
	Error     *publisher.Error
	Detail    string
	Retryable bool
	Active    bool
	Notice    string
}

type statusRow struct {
	At            time.Time
	State         string
	QueuePosition string
	Logs          []string
}

func (c *Console) job(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if !publisher.ValidID(id) {
		http.Error(w, "not a trigger id", http.StatusBadRequest)
		return
	}
	p := jobPage{page: c.newPage(r, "Job "+id), ID: id, Notice: r.URL.Query().Get("notice")}
	rec, err := publisher.LookupJob(ctx, c.js, c.streams.JobsBucket, id)
	if err != nil && !errors.Is(err, publisher.ErrJobNotFound) {
		c.fail(w, r, err)
		return
	}
	t, found, err := c.terminalOf(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if rec == nil && !found {
		w.WriteHeader(http.StatusNotFound)
		p.Refresh = true // a trigger just published may not be claimed yet
		p.Notice = cmp.Or(p.Notice+". ", "") + "falbridge knows no job " + id + " (never received, or its record and events have expired)"
		c.render(w, r, "job", &p)
		return
	}
	p.Record = rec
	var trig, md json.RawMessage
	if rec != nil {
		trig, md = rec.Trigger, rec.Metadata
		p.Active = rec.State != publisher.JobDone
		p.Refresh = p.Active && !found
	}
	if found {
		if t.Result != nil {
			p.Result = t.Result
			p.Output = indent(t.Result.Output)
			p.Media = findMedia(t.Result.Output)
			md = orRaw(md, t.Result.Metadata)
		} else {
			p.Error = t.Error
			p.Detail = indent(t.Error.Detail)
			trig = orRaw(trig, t.Error.Trigger)
			md = orRaw(md, t.Error.Metadata)
		}
	}
	p.Trigger, p.Metadata, p.RetryOf = indent(trig), indent(md), retryOf(md)
	_, retryErr := retryBody(trig, rec != nil && rec.Truncated, "x", id)
	p.Retryable = retryErr == nil
	sts, err := c.statusHistory(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, s := range sts {
		sr := statusRow{At: s.At, State: s.State}
		if s.QueuePosition != nil {
			sr.QueuePosition = strconv.Itoa(*s.QueuePosition)
		}
		sr.Logs = logLines(s.Logs)
		p.Statuses = append(p.Statuses, sr)
	}
	c.render(w, r, "job", &p)
}

// logLines renders fal's logs ([{message, level, timestamp}] or anything).
func logLines(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var logs []struct {
		Message   string `json:"message"`
		Level     string `json:"level"`
		Timestamp string `json:"timestamp"`
	}
	if json.Unmarshal(raw, &logs) != nil {
		return []string{string(raw)}
	}
	out := make([]string, 0, len(logs))
	for _, l := range logs {
		out = append(out, l.Level+" "+l.Message)
	}
	return out
}

func indent(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

type errorsPage struct {
	page
	Window int
	Groups []errorGroup
	Total  int
}

type errorGroup struct {
	Code, ModelID string
	Count         int
	Last          time.Time
	Rows          []row
}

// maxGroupRows bounds the jobs listed under one error group.
const maxGroupRows = 20

func (c *Console) errorsView(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := errorsPage{page: c.newPage(r, "Errors"), Window: c.cfg.ErrorsWindow}
	msgs, err := c.tail(ctx, c.streams.Results, nil, 0, c.cfg.ErrorsWindow)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	retriedAs := map[string]string{}
	groups := map[[2]string]*errorGroup{}
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		if !strings.HasPrefix(m.Subject, c.subjects.ErrorsPrefix+".") {
			// A result: only a retry's link is of interest, and most
			// results are no retry; decode only those that may be.
			if bytes.Contains(m.Data, []byte(RetryOfKey)) {
				if t, ok := c.decodeTerminal(m.Subject, m.Data, m.Seq, m.Time); ok {
					if old := retryOf(t.Metadata()); old != "" && retriedAs[old] == "" {
						retriedAs[old] = t.ID()
					}
				}
			}
			continue
		}
		t, ok := c.decodeTerminal(m.Subject, m.Data, m.Seq, m.Time)
		if !ok {
			continue
		}
		if old := retryOf(t.Metadata()); old != "" && retriedAs[old] == "" {
			retriedAs[old] = t.ID()
		}
		p.Total++
		k := [2]string{string(t.Error.Code), t.Error.ModelID}
		g := groups[k]
		if g == nil {
			g = &errorGroup{Code: k[0], ModelID: k[1], Last: t.At}
			groups[k] = g
		}
		g.Count++
		if len(g.Rows) < maxGroupRows {
			g.Rows = append(g.Rows, c.rowOfTerminal(t))
		}
	}
	for _, g := range groups {
		for i := range g.Rows {
			g.Rows[i].RetriedAs = retriedAs[g.Rows[i].ID]
		}
		p.Groups = append(p.Groups, *g)
	}
	slices.SortFunc(p.Groups, func(a, b errorGroup) int {
		return cmp.Or(b.Count-a.Count, cmp.Compare(a.Code, b.Code), cmp.Compare(a.ModelID, b.ModelID))
	})
	c.render(w, r, "errors", &p)
}

func orRaw(a, b json.RawMessage) json.RawMessage {
	if len(a) > 0 {
		return a
	}
	return b
}
