// Package recordio reads and writes the RecordIO framing of Mesos' streaming
// responses: each record is its length in decimal ASCII, a '\n', then that
// many bytes. HTTP chunk boundaries mean nothing (a proxy may re-chunk), so
// the reader works on a plain byte stream.
package recordio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// DefaultMaxRecordSize bounds a record unless the reader is told otherwise:
// large enough for an OFFERS event of thousands of agents, small enough that
// a corrupt length cannot make the reader allocate gigabytes.
const DefaultMaxRecordSize = 64 << 20

// maxLengthDigits is the longest decimal length prefix accepted (a uint64
// has 20 digits); anything longer is garbage, not a length.
const maxLengthDigits = 20

// FormatError is a stream that is not RecordIO: a length line that is not a
// positive decimal number, or a record larger than the reader allows.
type FormatError struct {
	Offset int64 // byte offset in the stream where the problem starts
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("recordio: malformed stream at byte %d: %s", e.Offset, e.Reason)
}

// Reader reads records from a stream.
type Reader struct {
	r       *bufio.Reader
	max     int
	offset  int64
	lastErr error
}

// NewReader reads records of at most maxRecordSize bytes (0 means
// DefaultMaxRecordSize).
func NewReader(r io.Reader, maxRecordSize int) *Reader {
	if maxRecordSize <= 0 {
		maxRecordSize = DefaultMaxRecordSize
	}
	return &Reader{r: bufio.NewReaderSize(r, 32<<10), max: maxRecordSize}
}

// ReadRecord returns the next record. At a clean end of stream (between
// records) it returns io.EOF; a stream cut inside a record returns
// io.ErrUnexpectedEOF; garbage returns a *FormatError. After an error every
// later call returns the same error: a stream out of step cannot resync.
func (r *Reader) ReadRecord() ([]byte, error) {
	if r.lastErr != nil {
		return nil, r.lastErr
	}
	rec, err := r.read()
	if err != nil {
		r.lastErr = err
	}
	return rec, err
}

func (r *Reader) read() ([]byte, error) {
	start := r.offset
	var n uint64
	digits := 0
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if digits == 0 {
					return nil, io.EOF
				}
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		r.offset++
		if c == '\n' {
			break
		}
		if c < '0' || c > '9' {
			return nil, &FormatError{Offset: start, Reason: fmt.Sprintf("record length contains %q; expected decimal digits then a newline", c)}
		}
		digits++
		if digits > maxLengthDigits {
			return nil, &FormatError{Offset: start, Reason: "record length has more than 20 digits"}
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return nil, &FormatError{Offset: start, Reason: "record length overflows 64 bits"}
		}
		n = n*10 + d
	}
	if digits == 0 {
		return nil, &FormatError{Offset: start, Reason: "empty record length"}
	}
	if n == 0 {
		return nil, &FormatError{Offset: start, Reason: "record length 0 (RecordIO records are never empty)"}
	}
	if n > uint64(r.max) {
		return nil, &FormatError{Offset: start, Reason: fmt.Sprintf("record of %d bytes exceeds the limit of %d bytes", n, r.max)}
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(r.r, buf)
	r.offset += int64(got)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// Writer writes records.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes records to w. Each record goes out in one Write call, so
// that over HTTP one record is one chunk (what Mesos does, and what lets a
// flushing http.ResponseWriter deliver each event at once).
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteRecord writes one record. Empty records are refused: RecordIO cannot
// represent them.
func (w *Writer) WriteRecord(rec []byte) error {
	if len(rec) == 0 {
		return errors.New("recordio: cannot write an empty record")
	}
	w.buf = strconv.AppendInt(w.buf[:0], int64(len(rec)), 10)
	w.buf = append(w.buf, '\n')
	w.buf = append(w.buf, rec...)
	_, err := w.w.Write(w.buf)
	return err
}

// Frame returns rec framed as one RecordIO record.
func Frame(rec []byte) []byte {
	out := strconv.AppendInt(make([]byte, 0, len(rec)+8), int64(len(rec)), 10)
	out = append(out, '\n')
	return append(out, rec...)
}
