package consumer

// Test-only access to the crash points of the intake pipeline.

func SetHookAfterSubmit(p *Pool, h func(id string)) { p.hooks.afterSubmit = h }
func SetHookBeforeAck(p *Pool, h func(id string))   { p.hooks.beforeAck = h }
