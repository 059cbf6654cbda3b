package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// Fal is the part of fal's API the pool uses; *falclient.Client implements it.
type Fal interface {
	Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error)
	Status(ctx context.Context, model, requestID string, withLogs bool) (*falclient.Status, error)
	StatusStream(ctx context.Context, model, requestID string, withLogs bool, onStatus func(*falclient.Status) error) (*falclient.Status, error)
	Result(ctx context.Context, model, requestID string) (json.RawMessage, error)
	Cancel(ctx context.Context, model, requestID string) error
	Run(ctx context.Context, model string, input any, opts falclient.RunOptions) (json.RawMessage, error)
	Stream(ctx context.Context, model string, input any, opts falclient.RunOptions, onEvent func(json.RawMessage) error) (json.RawMessage, error)
}

// WebhookVerifier checks a webhook's signature over its raw body and returns
// the signed request id; *falclient.Verifier implements it.
type WebhookVerifier interface {
	Verify(ctx context.Context, h http.Header, body []byte) (string, error)
}

var (
	_ Fal             = (*falclient.Client)(nil)
	_ WebhookVerifier = (*falclient.Verifier)(nil)
)

// Option configures a Pool.
type Option func(*Pool)

// WithLogger sets the logger; nil (the default) discards logs.
func WithLogger(l *slog.Logger) Option { return func(p *Pool) { p.log = l } }

// WithMetrics records the pool's metrics in m (see NewMetrics).
func WithMetrics(m *Metrics) Option { return func(p *Pool) { p.metrics = m } }

// WithVerifier sets the webhook signature verifier. It is required when
// webhook.verify is on (the default) and the webhook handler is served.
func WithVerifier(v WebhookVerifier) Option { return func(p *Pool) { p.verifier = v } }

// Pool is the consumer pool: trigger intake, webhook completion, poller and
// cancel handling. Create it with New, run it with Start, end it with Stop.
// Its methods are safe for concurrent use.
type Pool struct {
	cfg      config.Config
	nc       *nats.Conn
	js       jetstream.JetStream
	fal      Fal
	verifier WebhookVerifier
	log      *slog.Logger
	now      func() time.Time

	subjects publisher.Subjects
	timers   timerSubjects
	// reserved are falbridge's own subjects, never a result_subject.
	reserved    []string
	webhookBase string
	store       *jobStore
	emit        *emitter
	pending     jetstream.Stream
	// owner names this pool instance in the leases it takes.
	owner string
	// lastWebhook is when a correctly signed webhook last arrived (unix ns).
	lastWebhook atomic.Int64
	// stopBy is the deadline of a Stop in progress (unix ns; 0 when none):
	// fal calls started after it are bounded by what is left of it.
	stopBy atomic.Int64
	// pendingJobs is the count of submitted jobs of the last sweep.
	pendingJobs atomic.Int64
	// webhookBodies bounds the webhook deliveries being read at once;
	// webhookSlotWait is how long one waits for a slot (tests shorten it).
	webhookBodies   chan struct{}
	webhookSlotWait time.Duration
	// lastRejectLog and suppressedRejects rate-limit the log lines about
	// rejected webhook deliveries.
	lastRejectLog, suppressedRejects atomic.Int64
	// progressSlots bounds the status streams followed for live progress;
	// progressCtx ends them (at Stop), progressInHand counts them.
	progressSlots  chan struct{}
	progressCtx    context.Context
	endProgress    context.CancelFunc
	progressInHand sync.WaitGroup
	// recent caches the records this pool wrote last (see cache.go).
	recent *recentJobs
	// unannounced remembers jobs whose result read gave a 5xx that fal's
	// status had not announced (see fetchResult).
	unannounced unannouncedErrors
	// deferred holds the timers of webhook jobs not written yet, for
	// deferFor after their submit (see deferred.go).
	deferred deferredTimers
	deferFor time.Duration
	// syncRuns bounds the sync and stream runs in progress.
	syncRuns chan struct{}
	// cancels bounds the cancel requests served at once.
	cancels chan struct{}

	limiter *modelLimiter
	// adm applies the cross-replica caps on pending jobs; nil when they
	// are off (limits.max_pending 0).
	adm *admission
	// prices is spend.prices, parsed, over the Platform API's prices
	// (from priceSource; pricesLogged: the unusable ones logged).
	prices       *priceTable
	priceSource  PriceSource
	pricesLogged sync.Map
	budgets      []config.Budget
	// slotWait and slotRetry are modelSlotWait and modelSlotRetry (tests
	// shorten them).
	slotWait, slotRetry time.Duration
	metrics             *Metrics
	hooks               testHooks
	running             sync.Map // trigger id → context.CancelCauseFunc of a local sync/stream run

	mu       sync.Mutex
	started  bool
	stopping atomic.Bool
	stopped  chan struct{}
	stopOnce sync.Once
	runCtx   context.Context
	runStop  context.CancelCauseFunc
	ccs      []jetstream.ConsumeContext
	cancelSb *nats.Subscription
	work     chan jetstream.Msg
	polls    chan jetstream.Msg
	quit     <-chan struct{} // closed (by endWork) when workers should end
	endWork  context.CancelFunc
	quitCtx  context.Context // done with quit, for calls that must end with it
	workers  sync.WaitGroup
	// cancelsInHand counts cancel requests being served.
	cancelsInHand sync.WaitGroup
}

// New returns a Pool that uses nc for NATS and fal for fal's API. cfg must be
// valid (config.Load validates it).
func New(nc *nats.Conn, fal Fal, cfg config.Config, opts ...Option) (*Pool, error) {
	if nc == nil {
		return nil, errors.New("consumer: nil NATS connection")
	}
	if fal == nil {
		return nil, errors.New("consumer: nil fal client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("consumer: jetstream: %w", err)
	}
	p := &Pool{
		cfg:       cfg,
		nc:        nc,
		js:        js,
		fal:       fal,
		now:       time.Now,
		stopped:   make(chan struct{}),
		slotWait:  modelSlotWait,
		slotRetry: modelSlotRetry,
	}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Webhook.Verify && p.verifier == nil && cfg.Webhook.PublicURL != "" {
		return nil, errors.New("consumer: webhook.verify is on but no verifier was given (WithVerifier)")
	}
	p.subjects = publisher.Subjects{
		Requests:       cfg.Subjects.Requests,
		ResultsPrefix:  cfg.Subjects.Results,
		ErrorsPrefix:   cfg.Subjects.Errors,
		StatusPrefix:   cfg.Subjects.Status,
		CancelPrefix:   cfg.Subjects.Cancel,
		ResultsStream:  cfg.Streams.Results,
		StatusStream:   cfg.Streams.Status,
		RequestsStream: cfg.Streams.Requests,
		JobsBucket:     cfg.Streams.JobsBucket,
	}
	p.timers = newTimerSubjects(cfg)
	p.reserved = cfg.ReservedSubjects()
	p.owner = newWriteToken()
	p.cancels = make(chan struct{}, cancelConcurrency)
	p.webhookBodies = make(chan struct{}, webhookBodiesInFlight)
	p.webhookSlotWait = webhookSlotWait
	p.recent = newRecentJobs()
	p.progressSlots = make(chan struct{}, cfg.Limits.MaxProgressStreams)
	p.progressCtx, p.endProgress = context.WithCancel(context.Background())
	p.syncRuns = make(chan struct{}, min(cfg.Limits.MaxSyncRuns, cfg.Limits.Workers))
	p.webhookBase = cfg.Webhook.URL()
	pub, err := publisher.New(js, publisher.WithSubjects(p.subjects))
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	p.emit = &emitter{js: js, nc: nc, subjects: p.subjects, pattern: p.subjects.TerminalPattern(), pub: pub, log: p.log}
	p.limiter = newModelLimiter(cfg.Limits)
	configured, err := cfg.Spend.PriceTable()
	if err != nil {
		return nil, fmt.Errorf("consumer: spend.prices: %w", err)
	}
	p.prices = newPriceTable(configured)
	p.prices.platform = cfg.Spend.PricesSource == config.PricesFromPlatform && p.priceSource != nil
	if p.budgets, err = cfg.Spend.BudgetList(); err != nil {
		return nil, fmt.Errorf("consumer: spend.budgets: %w", err)
	}
	return p, nil
}

// Start provisions streams (unless streams.provision is off), binds the
// durable consumers and starts pulling. It returns once the pool is running;
// ctx bounds only the start-up calls.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return ErrAlreadyStarted
	}
	if p.stopping.Load() {
		return ErrStopping
	}
	if p.cfg.Streams.Provision {
		if err := Provision(ctx, p.js, p.cfg); err != nil {
			return err
		}
	}
	kv, err := p.js.KeyValue(ctx, p.cfg.Streams.JobsBucket)
	if err != nil {
		return fmt.Errorf("consumer: job bucket %q: %w", p.cfg.Streams.JobsBucket, err)
	}
	p.store = newJobStore(p.js, kv, p.cfg.Streams.JobsBucket, p.nc.MaxPayload())
	if p.cfg.Limits.Admission() {
		p.adm = &admission{kv: kv, jobs: p.store, limits: p.cfg.Limits, spendCfg: p.cfg.Spend, budgets: p.budgets, prices: p.prices, now: p.now, metrics: p.metrics}
		p.adm.warnIfTooBig(p.log, p.nc.MaxPayload())
	}
	if p.pending, err = p.js.Stream(ctx, p.cfg.Streams.Pending); err != nil {
		return fmt.Errorf("consumer: pending stream %q: %w", p.cfg.Streams.Pending, err)
	}
	triggers, err := p.js.CreateOrUpdateConsumer(ctx, p.cfg.Streams.Requests, triggerConsumerConfig(p.cfg))
	if err != nil {
		return fmt.Errorf("consumer: trigger consumer on %q: %w", p.cfg.Streams.Requests, err)
	}
	poller, err := p.js.CreateOrUpdateConsumer(ctx, p.cfg.Streams.Pending, pollerConsumerConfig(p.cfg))
	if err != nil {
		return fmt.Errorf("consumer: poller consumer on %q: %w", p.cfg.Streams.Pending, err)
	}

	if p.metrics != nil {
		p.metrics.pendingGaugeState.count.Store(&p.pendingJobs)
	}

	p.runCtx, p.runStop = context.WithCancelCause(context.Background())
	p.work = make(chan jetstream.Msg)
	p.polls = make(chan jetstream.Msg)
	p.quitCtx, p.endWork = context.WithCancel(context.Background())
	p.quit = p.quitCtx.Done()
	p.workers.Add(2)
	go p.sweepLoop()
	p.startPricing()
	p.deferFor = p.deferWindow()
	go p.deferLoop()
	for range p.cfg.Limits.Workers {
		p.workers.Add(2)
		go p.loop(p.work, p.handleTrigger)
		go p.loop(p.polls, p.handleTimer)
	}
	batch := p.cfg.Consumer.FetchBatch
	errHandler := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !p.stopping.Load() {
			p.log.Warn("pull error", "err", err)
		}
	})
	cc, err := triggers.Consume(p.dispatch(p.work), jetstream.PullMaxMessages(batch), errHandler)
	if err != nil {
		p.abortStart()
		return fmt.Errorf("consumer: consume triggers: %w", err)
	}
	p.ccs = append(p.ccs, cc)
	cc, err = poller.Consume(p.dispatch(p.polls), jetstream.PullMaxMessages(batch), errHandler)
	if err != nil {
		p.abortStart()
		return fmt.Errorf("consumer: consume pending jobs: %w", err)
	}
	p.ccs = append(p.ccs, cc)
	p.cancelSb, err = p.nc.QueueSubscribe(p.subjects.CancelPrefix+".*", "falbridge", p.handleCancel)
	if err != nil {
		p.abortStart()
		return fmt.Errorf("consumer: subscribe %s.*: %w", p.subjects.CancelPrefix, err)
	}
	p.started = true
	p.log.Info("consumer started", "requests_stream", p.cfg.Streams.Requests, "workers", p.cfg.Limits.Workers,
		"webhook", p.webhookBase != "", "max_in_flight", p.cfg.Limits.MaxInFlight)
	return nil
}

// abortStart undoes a partial Start; p.mu is held.
func (p *Pool) abortStart() {
	for _, cc := range p.ccs {
		cc.Stop()
	}
	p.ccs = nil
	p.endWork()
	p.workers.Wait()
	p.runStop(ErrStopping)
}

// dispatch hands a pulled message to a worker. It blocks while every worker
// is busy, which stops the pull: triggers wait in the stream, not in memory.
func (p *Pool) dispatch(ch chan<- jetstream.Msg) jetstream.MessageHandler {
	return func(m jetstream.Msg) {
		select {
		case ch <- m:
		case <-p.quit:
			// Stopping: hand it back for another replica.
			p.settle(m, nakAfter(0))
		}
	}
}

// loop is one worker; it ends when p.quit is closed.
func (p *Pool) loop(ch <-chan jetstream.Msg, h handler) {
	defer p.workers.Done()
	for {
		select {
		case m := <-ch:
			p.safely(p.runCtx, m, h)
		case <-p.quit:
			return
		}
	}
}

// Stop stops pulling, lets the work in hand finish (submissions are never cut
// off half way), and returns when every worker has ended or ctx is done, in
// which case in-flight work is cancelled with ErrStopping and ctx's error is
// returned. Stop is idempotent and safe to call without Start.
func (p *Pool) Stop(ctx context.Context) error {
	p.stopping.Store(true)
	p.mu.Lock()
	started := p.started
	ccs := p.ccs
	p.mu.Unlock()
	if !started {
		p.stopOnce.Do(func() { close(p.stopped) })
		return nil
	}
	var err error
	p.stopOnce.Do(func() {
		defer close(p.stopped)
		if dl, ok := ctx.Deadline(); ok {
			p.stopBy.Store(dl.UnixNano())
		}
		p.endProgress()
		if p.cancelSb != nil {
			_ = p.cancelSb.Unsubscribe()
		}
		for _, cc := range ccs {
			cc.Drain()
		}
		// Let the buffered messages reach the workers, but not for ever: a
		// drain can fail to close after a NATS reconnect, and the grace
		// period is for the work in hand. Whatever is still buffered after
		// Stop is Nak'ed by dispatch and redelivered.
		drainCtx, cancelDrain := context.WithTimeout(ctx, drainBudget(ctx))
		for _, cc := range ccs {
			select {
			case <-cc.Closed():
			case <-drainCtx.Done():
			}
		}
		cancelDrain()
		for _, cc := range ccs {
			cc.Stop()
		}
		p.endWork()
		done := make(chan struct{})
		go func() {
			p.workers.Wait()
			p.cancelsInHand.Wait()
			p.progressInHand.Wait()
			close(done)
		}()
		select {
		case <-done:
			// No worker is left to defer a timer: arm those still held.
			p.armDeferred(ctx)
		case <-ctx.Done():
			// Out of time: cancel what is left. Workers end on their own
			// once their fal call returns; the process is about to exit.
			// Deferred timers are left to the sweep.
			p.runStop(ErrStopping)
			err = fmt.Errorf("consumer: stop: %w", ctx.Err())
		}
		p.runStop(ErrStopping)
		p.log.Info("consumer stopped")
	})
	return err
}

// drainBudget is how long Stop waits for the pulls to drain: half of what is
// left of ctx, or 5 s without a deadline.
func drainBudget(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl)/2, 0)
	}
	return 5 * time.Second
}

// Stopped is closed once Stop has finished.
func (p *Pool) Stopped() <-chan struct{} { return p.stopped }

// Draining reports whether Stop has been called; readiness probes use it.
func (p *Pool) Draining() bool { return p.stopping.Load() }

// callBudget bounds one fal call made by a worker: well inside AckWait (a
// message must never be redelivered while its first worker is at it), and
// inside the shutdown grace period, less the time the write after the call
// needs, so that SIGTERM never outlasts the grace period. Once Stop has
// begun, a new call gets only what is left of its deadline.
func (p *Pool) callBudget() time.Duration {
	b := min(p.cfg.Consumer.AckWait*3/4, p.cfg.Shutdown.GracePeriod-config.FinishReserve)
	if by := p.stopBy.Load(); by != 0 {
		b = min(b, max(time.Until(time.Unix(0, by))-config.FinishReserve, 0))
	}
	return max(b, 0)
}

// testHooks let tests stop a worker at the exact points of a crash. They
// are nil outside tests.
type testHooks struct {
	afterSubmit func(id string) // fal accepted; the job is not stored yet
	beforeAck   func(id string) // the job is stored and its timer set
}
