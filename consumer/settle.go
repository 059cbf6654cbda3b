package consumer

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// verdictKind is what becomes of a delivered message.
type verdictKind int

const (
	verdictAck verdictKind = iota
	verdictNak
	verdictTerm
	// verdictNone: the message was already settled or handed over (a
	// local sync run that a cancel ended acks nothing twice).
	verdictNone
)

// verdict is a handler's decision about the message it was given. Handlers
// return one; settle applies it. No other code in the package acks, Naks or
// terminates a message.
type verdict struct {
	kind   verdictKind
	delay  time.Duration // verdictNak: redeliver after this
	reason string        // verdictTerm: the reason recorded by the server
}

func ack() verdict                     { return verdict{kind: verdictAck} }
func nakAfter(d time.Duration) verdict { return verdict{kind: verdictNak, delay: max(d, 0)} }
func term(reason string) verdict       { return verdict{kind: verdictTerm, reason: reason} }
func (v verdict) String() string {
	switch v.kind {
	case verdictAck:
		return "ack"
	case verdictNak:
		return fmt.Sprintf("nak(%s)", v.delay)
	case verdictTerm:
		return "term(" + v.reason + ")"
	}
	return "none"
}

// settle applies v to m. It is the only caller of Ack, NakWithDelay and
// TermWithReason in the package. A failed settle is logged at debug: the
// server redelivers an unsettled message after AckWait, and every handler is
// safe to run again.
func (p *Pool) settle(m jetstream.Msg, v verdict) {
	var err error
	switch v.kind {
	case verdictAck:
		err = m.Ack()
	case verdictNak:
		err = m.NakWithDelay(v.delay)
	case verdictTerm:
		err = m.TermWithReason(v.reason)
	case verdictNone:
		return
	}
	if err != nil {
		p.log.Debug("settle failed; the server will redeliver", "subject", m.Subject(), "verdict", v.String(), "err", err)
	}
}

// handler is one kind of message's logic: it decides, settle applies.
type handler func(ctx context.Context, m jetstream.Msg) verdict

// safely runs h and settles its verdict. A panic becomes a Nak after a
// short delay with its stack logged, never a crash of the pool.
func (p *Pool) safely(ctx context.Context, m jetstream.Msg, h handler) {
	v := func() (v verdict) {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("panic handling message", "subject", m.Subject(), "panic", r, "stack", string(debug.Stack()))
				v = nakAfter(natsDelays.after(3, 0))
			}
		}()
		return h(ctx, m)
	}()
	p.settle(m, v)
}
