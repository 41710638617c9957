package agent

import "time"

// Clock is the time the agent's timers run on (registration and
// re-registration timeouts, shutdown grace periods, status update retries,
// registration backoff). Tests of the timing logic pass a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time    { return time.After(d) }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
