package schedclient

import (
	"io"
	"sync/atomic"
	"time"
)

// Clock is the time the heartbeat watchdog and the reconnect backoff run
// on. Tests pass a fake one, so that five missed 15-second heartbeats can
// be checked without waiting 75 seconds.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the client uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// watchdog declares a connection dead when the client has been waiting for
// bytes from the master for a whole period without getting any. Only time
// spent waiting on the network counts: while the handler works on an event
// nothing is read, and a slow handler must not look like a dead master.
type watchdog struct {
	clock  Clock
	period atomic.Int64 // time.Duration
	// since is when the current wait for bytes began (UnixNano of the
	// clock), 0 while the client is not waiting on the network.
	since atomic.Int64
	poke  chan struct{}
	done  chan struct{}
	// dead is called once, from the watchdog's goroutine, with the time
	// spent waiting.
	dead func(waited time.Duration)
}

func newWatchdog(clock Clock, period time.Duration, dead func(time.Duration)) *watchdog {
	w := &watchdog{clock: clock, poke: make(chan struct{}, 1), done: make(chan struct{}), dead: dead}
	w.period.Store(int64(period))
	go w.run()
	return w
}

func (w *watchdog) run() {
	for {
		d, dead := w.check()
		if dead {
			w.dead(d)
			return
		}
		t := w.clock.NewTimer(d)
		select {
		case <-w.done:
			t.Stop()
			return
		case <-w.poke:
			t.Stop()
		case <-t.C():
		}
	}
}

// check returns how long to sleep before checking again, or (the time
// waited, true) when the connection is dead. A timer armed before a wait
// began fires no later than since+period, since it was armed for a whole
// period at most: so a wait starting needs no poke.
func (w *watchdog) check() (time.Duration, bool) {
	period := time.Duration(w.period.Load())
	since := w.since.Load()
	if since == 0 {
		return period, false
	}
	waited := time.Duration(w.clock.Now().UnixNano() - since)
	if waited >= period {
		return waited, true
	}
	return period - waited, false
}

// waiting marks the start of a wait for bytes from the master.
func (w *watchdog) waiting() { w.since.Store(w.clock.Now().UnixNano()) }

// busy marks the end of a wait: bytes (or an error) arrived.
func (w *watchdog) busy() { w.since.Store(0) }

// setPeriod changes the allowance (when SUBSCRIBED announces the
// heartbeat interval); a shorter one takes effect at once.
func (w *watchdog) setPeriod(d time.Duration) {
	w.period.Store(int64(d))
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *watchdog) stop() { close(w.done) }

// body makes reads of r count as waiting for the master.
func (w *watchdog) body(r io.Reader) io.Reader {
	return &watchedReader{r: r, w: w}
}

type watchedReader struct {
	r io.Reader
	w *watchdog
}

func (r *watchedReader) Read(p []byte) (int, error) {
	r.w.waiting()
	n, err := r.r.Read(p)
	r.w.busy()
	return n, err
}
