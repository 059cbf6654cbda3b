package console

import (
	"cmp"
	"crypto/subtle"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/publisher"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

// Window sizes: how far back, in stream messages, a view reads. Each is a
// bound on the work of one page view, whatever the bucket holds.
const (
	// PageSizeDefault is the finished jobs one page of the jobs view shows.
	PageSizeDefault = 50
	// ActiveWindowDefault is how many of the newest job-record revisions
	// the in-flight table and the pending-per-model counts are taken from.
	ActiveWindowDefault = 1000
	// ErrorsWindowDefault is how many of the newest result and error
	// events the errors view groups.
	ErrorsWindowDefault = 2000
	// StatusLimit bounds the status events shown on a job page.
	StatusLimit = 200
)

//go:embed web
var webFS embed.FS

// Config is what a Console reads and how it is reached.
type Config struct {
	// NATS is the connection; cancels are core NATS requests on it.
	NATS *nats.Conn
	// JetStream reads the streams and the bucket, and publishes retries.
	JetStream jetstream.JetStream
	// Bridge is falbridge's configuration: stream, bucket and subject
	// names, and admin.console_token.
	Bridge config.Config
	// Gatherer, when set, is this replica's Prometheus registry: the
	// overview reads falbridge_completions_total from it (webhook vs poll
	// completions are not recorded in the bucket or the streams).
	Gatherer prometheus.Gatherer
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// PageSize, ActiveWindow and ErrorsWindow default to PageSizeDefault,
	// ActiveWindowDefault and ErrorsWindowDefault.
	PageSize, ActiveWindow, ErrorsWindow int
}

// Console serves the web console. Create it with [New]; its methods are
// safe for concurrent use.
type Console struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects publisher.Subjects
	pub      *publisher.Publisher // the read side: a job's terminal event
	streams  config.Streams
	kvStream string // the bucket's stream, "KV_<bucket>"
	kvPrefix string // "$KV.<bucket>."
	token    string
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	handler  http.Handler

	// quit ends the live feeds (Close), so that a graceful stop of the
	// admin listener does not wait on open event streams.
	quit      chan struct{}
	closeOnce sync.Once
	live      sync.WaitGroup
}

// New returns a Console for cfg. Errors wrap [ErrInvalidConfig].
func New(cfg Config) (*Console, error) {
	if cfg.NATS == nil || cfg.JetStream == nil {
		return nil, fmt.Errorf("%w: NATS and JetStream are required", ErrInvalidConfig)
	}
	b := cfg.Bridge
	c := &Console{
		cfg: cfg, nc: cfg.NATS, js: cfg.JetStream,
		subjects: publisher.Subjects{
			Requests:       b.Subjects.Requests,
			ResultsPrefix:  b.Subjects.Results,
			ErrorsPrefix:   b.Subjects.Errors,
			StatusPrefix:   b.Subjects.Status,
			CancelPrefix:   b.Subjects.Cancel,
			ResultsStream:  b.Streams.Results,
			StatusStream:   b.Streams.Status,
			RequestsStream: b.Streams.Requests,
			JobsBucket:     b.Streams.JobsBucket,
		}.WithDefaults(),
		streams:  b.Streams,
		kvStream: "KV_" + b.Streams.JobsBucket,
		kvPrefix: "$KV." + b.Streams.JobsBucket + ".",
		token:    b.Admin.ConsoleToken.Reveal(),
		log:      cfg.Logger,
		now:      cfg.Now,
		quit:     make(chan struct{}),
	}
	if b.Streams.JobsBucket == "" || b.Streams.Results == "" || b.Streams.Status == "" {
		return nil, fmt.Errorf("%w: streams.results, streams.status and streams.jobs_bucket are required", ErrInvalidConfig)
	}
	c.cfg.PageSize = cmp.Or(cfg.PageSize, PageSizeDefault)
	c.cfg.ActiveWindow = cmp.Or(cfg.ActiveWindow, ActiveWindowDefault)
	c.cfg.ErrorsWindow = cmp.Or(cfg.ErrorsWindow, ErrorsWindowDefault)
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var err error
	if c.pub, err = publisher.New(c.js, publisher.WithSubjects(c.subjects)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

// Handler returns the console's handler; mount it at [Prefix].
func (c *Console) Handler() http.Handler { return c.handler }

// Close ends every open live feed and makes new ones end at once. Pages
// keep working. Call it before shutting the admin listener down.
func (c *Console) Close() {
	c.closeOnce.Do(func() { close(c.quit) })
	c.live.Wait()
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web/static")
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix+"{$}", c.overview)
	mux.HandleFunc("GET "+Prefix+"jobs", c.jobs)
	mux.HandleFunc("GET "+Prefix+"jobs/{id}", c.job)
	mux.HandleFunc("POST "+Prefix+"jobs/{id}/retry", c.retry)
	mux.HandleFunc("POST "+Prefix+"jobs/{id}/cancel", c.cancel)
	mux.HandleFunc("GET "+Prefix+"errors", c.errorsView)
	mux.HandleFunc("GET "+Prefix+"live", c.liveFeed)
	// Actions are POSTs a browser would also send cross-site with the
	// user's basic-auth credentials: refuse cross-origin ones.
	return c.authenticate(http.NewCrossOriginProtection().Handler(mux))
}

// authenticate requires the token, when one is configured, as a Bearer
// token or as the basic-auth password (the browser asks for it once).
func (c *Console) authenticate(next http.Handler) http.Handler {
	if c.token == "" {
		return next
	}
	want := []byte(c.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := ""
		if _, pw, ok := r.BasicAuth(); ok {
			got = pw
		} else if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = t
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="falbridge console", charset="UTF-8"`)
			http.Error(w, "console token required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
