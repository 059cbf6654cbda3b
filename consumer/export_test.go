package consumer

import "time"

// Test-only access to the crash points of the intake pipeline.

func SetHookAfterSubmit(p *Pool, h func(id string)) { p.hooks.afterSubmit = h }
func SetHookBeforeAck(p *Pool, h func(id string))   { p.hooks.beforeAck = h }

// SetModelSlotTimes shortens the wait for a per-model slot and the Nak delay
// after it, so that tests can make a trigger wait through many deliveries.
func SetModelSlotTimes(p *Pool, wait, retry time.Duration) { p.slotWait, p.slotRetry = wait, retry }
