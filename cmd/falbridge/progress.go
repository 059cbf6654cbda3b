package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/falbridge/falbridge/publisher"
)

// isTerminal reports whether w is a terminal, so that progress can be
// redrawn in place. It asks the terminal driver: /dev/null is a character
// device too, but no terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// termWidth is the width status lines on w are cut to: the terminal's own,
// else $COLUMNS, else 80.
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if n, _, err := term.GetSize(int(f.Fd())); err == nil && n > 20 {
			return n
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 20 {
		return n
	}
	return 80
}

// statusLine is one line of progress at the bottom of a terminal, redrawn
// in place with \r; other lines are printed above it. On anything but a
// terminal, Set draws nothing and Println writes plain lines. It is safe for
// concurrent use.
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	width int
	shown int // runes of the line on screen
	text  string
}

func newStatusLine(w io.Writer, tty bool) *statusLine {
	return &statusLine{w: w, tty: tty, width: termWidth(w)}
}

// Set replaces the status line (terminals only).
func (s *statusLine) Set(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.text = shorten(text, s.width-1)
	s.draw()
}

func (s *statusLine) draw() {
	if !s.tty {
		return
	}
	n := len([]rune(s.text))
	pad := max(s.shown-n, 0)
	fmt.Fprintf(s.w, "\r%s%s", s.text, strings.Repeat(" ", pad))
	if pad > 0 {
		fmt.Fprintf(s.w, "\r%s", s.text)
	}
	s.shown = n
}

func (s *statusLine) erase() {
	if s.tty && s.shown > 0 {
		fmt.Fprintf(s.w, "\r%s\r", strings.Repeat(" ", s.shown))
		s.shown = 0
	}
}

// Println prints a line above the status line.
func (s *statusLine) Println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erase()
	fmt.Fprintln(s.w, line)
	s.draw()
}

// Around runs f (which writes whole lines to the terminal, on any writer)
// with the status line erased, then draws text as the new status line.
func (s *statusLine) Around(f func(), text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erase()
	f()
	s.text = shorten(text, s.width-1)
	s.draw()
}

// Done erases the status line for good.
func (s *statusLine) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.erase()
	s.text = ""
}

// spinnerFrames are drawn in turn while waiting.
var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// frameAt is the spinner frame to show at elapsed time d.
func frameAt(d time.Duration) int { return int(d / (100 * time.Millisecond)) }

// tick calls f(0) at once, then f(1), f(2)… every d until ctx is done. It
// returns when ctx is done and f has returned.
func tick(ctx context.Context, d time.Duration, f func(n int)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for n := 0; ; n++ {
		f(n)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// jobProgress shows the progress of one job while publish --wait (or
// result) waits: on a terminal a spinner line with the state, queue
// position and elapsed time, fal's log lines above it; elsewhere one plain
// line per change and a reminder every 10 s.
type jobProgress struct {
	line  *statusLine
	id    string
	start time.Time

	mu       sync.Mutex
	state    string
	lastLine string
	lastOut  time.Time
	seenLogs map[string]bool
}

func newJobProgress(w io.Writer, tty bool, id, initial string) *jobProgress {
	return &jobProgress{line: newStatusLine(w, tty), id: id, start: time.Now(), lastOut: time.Now(),
		state: initial, seenLogs: map[string]bool{}}
}

// update takes a status event's state and logs.
func (p *jobProgress) update(state string, pos *int, logs []falLog) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text := state
	if pos != nil && state == publisher.StateInQueue {
		text = fmt.Sprintf("%s (position %d)", state, *pos)
	}
	p.state = text
	p.plain()
	for _, l := range logs {
		key := l.Timestamp + "\x00" + l.Message
		if p.seenLogs[key] {
			continue
		}
		p.seenLogs[key] = true
		p.line.Println("  fal: " + l.Message)
	}
}

// plain prints the state as a plain line when it changed (not on a
// terminal: there the spinner shows it).
func (p *jobProgress) plain() {
	if p.line.tty {
		return
	}
	l := p.id + ": " + p.state
	if l != p.lastLine {
		p.line.Println(l)
		p.lastLine, p.lastOut = l, time.Now()
	}
}

// draw redraws the spinner (terminal) or prints a reminder (otherwise).
func (p *jobProgress) draw(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.start)
	if p.line.tty {
		p.line.Set(fmt.Sprintf("%s %5.1fs  %s  %s", spinnerFrames[n%len(spinnerFrames)], elapsed.Seconds(), p.id, p.state))
		return
	}
	if n > 0 && time.Since(p.lastOut) >= 10*time.Second {
		p.line.Println(fmt.Sprintf("%s: %s, %s elapsed", p.id, p.state, elapsed.Truncate(time.Second)))
		p.lastOut = time.Now()
	}
}

// batchCounts are the numbers a batch progress line shows.
type batchCounts struct {
	total, done, failed, pending int
}

// batchProgressText is the progress bar of a batch: a bar on a terminal,
// key=value pairs otherwise.
// On a terminal, the bar (at most 20 cells) gives way so that the line fits
// width columns.
func batchProgressText(c batchCounts, elapsed time.Duration, tty bool, frame, width int) string {
	finished := c.done + c.failed
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(finished) / s
	}
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(c.total-finished)/rate*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
	}
	if !tty {
		return fmt.Sprintf("batch: %d/%d finished, done %d, failed %d, pending %d, %.1f/s, eta %s",
			finished, c.total, c.done, c.failed, c.pending, rate, eta)
	}
	spin := spinnerFrames[frame%len(spinnerFrames)]
	if finished == c.total {
		spin = " "
	}
	// ETA and rate before the counts: what a too narrow terminal cuts is
	// the end.
	rest := fmt.Sprintf("%d/%d  ETA %s  %.1f/s  done %d  failed %d  pending %d",
		finished, c.total, eta, rate, c.done, c.failed, c.pending)
	cells := min(20, width-1-len(rest)-3) // 3: the spinner and two spaces
	if cells < 4 {
		return spin + " " + rest
	}
	filled := 0
	if c.total > 0 {
		filled = finished * cells / c.total
	}
	bar := strings.Repeat("█", filled) + strings.Repeat("░", cells-filled)
	return spin + " " + bar + " " + rest
}
