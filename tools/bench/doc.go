// Command bench measures falbridge against a hand-written naive worker on one
// machine, each as separate processes: nats-server (built from the module
// version falbridge depends on, file store), the fal simulator (cmd/falsim)
// and the system under test. `make bench` runs it; BENCH_QUICK=1 makes it a
// short run.
//
// Kinds measured, interleaved and repeated (each a fresh server, simulator
// and system under test):
//
//   - falbridge-webhook: `falbridge serve` with a webhook URL (the default
//     production set-up).
//   - falbridge-poll: `falbridge serve` without one: every job is polled.
//   - naive: the worker a user would write first (see naive.go): pull one
//     trigger, submit, poll status every 500 ms, fetch the result, publish
//     it, ack; 64 goroutines. It lives in this program (`bench naive`) and
//     runs as its own process.
//
// Every figure is printed, none is asserted as a timing. The run fails (exit
// 1) only on wrong counts: a trigger without exactly one terminal event.
// Every process the harness starts is stopped by its PID, also on failure,
// and is killed with the harness if the harness dies (Pdeathsig).
package main
