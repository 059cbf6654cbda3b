package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/falbridge/falbridge/config"
)

// modelSlotWait is how long a worker waits for a per-model slot before it
// hands the trigger back to the stream for modelSlotRetry.
const (
	modelSlotWait  = 2 * time.Second
	modelSlotRetry = time.Second
)

// modelLimiter bounds how many triggers of one model are being submitted or
// run at once on this replica.
type modelLimiter struct {
	limits config.Limits // ModelLimit gives each model's bound
	mu     sync.Mutex
	sems   map[string]chan struct{}
}

func newModelLimiter(limits config.Limits) *modelLimiter {
	return &modelLimiter{limits: limits, sems: map[string]chan struct{}{}}
}

// acquire takes a slot for model, waiting up to wait. The returned release
// func is nil when no slot was free in time.
func (l *modelLimiter) acquire(ctx context.Context, model string, wait time.Duration) func() {
	n := l.limits.ModelLimit(model)
	if n <= 0 {
		return func() {}
	}
	l.mu.Lock()
	sem, ok := l.sems[model]
	if !ok {
		sem = make(chan struct{}, n)
		l.sems[model] = sem
	}
	l.mu.Unlock()
	release := func() { <-sem }
	select {
	case sem <- struct{}{}:
		return release
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return release
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}
