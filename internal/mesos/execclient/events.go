package execclient

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

// readEvents reads the RecordIO stream of a SUBSCRIBE response and hands
// each event to deliver until the stream ends, a record is not a valid
// event, or deliver fails. It always returns an error saying which: a
// stream does not end well.
func readEvents(r io.Reader, enc codec.Encoding, deliver func(*executorpb.Event) error) error {
	rr := recordio.NewReader(r, 0)
	for n := 1; ; n++ {
		rec, err := rr.ReadRecord()
		if err != nil {
			var fe *recordio.FormatError
			switch {
			case errors.Is(err, io.EOF):
				return fmt.Errorf("the agent closed the event stream after %d events", n-1)
			case errors.Is(err, io.ErrUnexpectedEOF):
				return fmt.Errorf("the event stream broke off before the end of event %d (the connection was cut)", n)
			case errors.As(err, &fe):
				return fmt.Errorf("the event stream is not RecordIO-framed events (%v): garbage from the agent, or not a Mesos agent", err)
			}
			return fmt.Errorf("reading event %d from the agent: %w", n, err)
		}
		ev := &executorpb.Event{}
		if err := codec.Unmarshal(enc, rec, ev); err != nil {
			return fmt.Errorf("event %d from the agent is not a %s executor Event: %v (record begins %s)", n, enc, err, preview(rec))
		}
		if err := checkEvent(ev); err != nil {
			return fmt.Errorf("event %d from the agent: %v", n, err)
		}
		if err := deliver(ev); err != nil {
			return err
		}
	}
}

// checkEvent refuses an event without the payload its type promises, which
// would otherwise reach the executor as a LAUNCH of nothing. Events of types
// this schema does not know are passed on, as Mesos' library does: the
// executor may ignore them.
func checkEvent(ev *executorpb.Event) error {
	var missing string
	switch ev.GetType() {
	case executorpb.Event_SUBSCRIBED:
		if ev.Subscribed == nil {
			missing = "subscribed"
		}
	case executorpb.Event_LAUNCH:
		if ev.Launch == nil {
			missing = "launch"
		}
	case executorpb.Event_LAUNCH_GROUP:
		if ev.LaunchGroup == nil {
			missing = "launch_group"
		}
	case executorpb.Event_KILL:
		if ev.Kill == nil {
			missing = "kill"
		}
	case executorpb.Event_ACKNOWLEDGED:
		if ev.Acknowledged == nil {
			missing = "acknowledged"
		}
	case executorpb.Event_MESSAGE:
		if ev.Message == nil {
			missing = "message"
		}
	case executorpb.Event_ERROR:
		if ev.Error == nil {
			missing = "error"
		}
	}
	if missing != "" {
		return fmt.Errorf("a %s event without its %q field", ev.GetType(), missing)
	}
	return nil
}

// preview shows the start of a bad record, quoted so that binary garbage
// cannot mess up a log line.
func preview(rec []byte) string {
	const n = 64
	if len(rec) > n {
		return strconv.Quote(string(rec[:n])) + "..."
	}
	return strconv.Quote(string(rec))
}
