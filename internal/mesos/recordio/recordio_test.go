package recordio

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadsTheRecordingsFraming(t *testing.T) {
	// Two records exactly as the Mesos 1.11 master framed them.
	stream := "20\n{\"type\":\"HEARTBEAT\"}" + "20\n{\"type\":\"HEARTBEAT\"}"
	r := NewReader(strings.NewReader(stream), 0)
	for i := 0; i < 2; i++ {
		rec, err := r.ReadRecord()
		if err != nil || string(rec) != `{"type":"HEARTBEAT"}` {
			t.Fatalf("record %d: %q, %v", i, rec, err)
		}
	}
	if _, err := r.ReadRecord(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// Any chunking of the stream yields the same records.
func TestAnyChunking(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var recs [][]byte
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := 0; i < 200; i++ {
		rec := make([]byte, 1+rng.Intn(3000))
		rng.Read(rec)
		recs = append(recs, rec)
		if err := w.WriteRecord(rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
		iotest.DataErrReader,
		func(r io.Reader) io.Reader { return &randomChunks{r: r, rng: rand.New(rand.NewSource(2))} },
	} {
		r := NewReader(wrap(bytes.NewReader(buf.Bytes())), 0)
		for i, want := range recs {
			got, err := r.ReadRecord()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("record %d: err %v, equal %v", i, err, bytes.Equal(got, want))
			}
		}
		if _, err := r.ReadRecord(); err != io.EOF {
			t.Fatalf("want EOF, got %v", err)
		}
	}
}

type randomChunks struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *randomChunks) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1+c.rng.Intn(len(p))]
	}
	return c.r.Read(p)
}

func TestMalformed(t *testing.T) {
	for _, c := range []struct {
		in      string
		max     int
		wantErr string
		format  bool
	}{
		{"abc\n{}", 0, `contains 'a'`, true},
		{"\n{}", 0, "empty record length", true},
		{"0\n", 0, "length 0", true},
		{"12 \n", 0, `contains ' '`, true},
		{"-5\n", 0, `contains '-'`, true},
		{"000000000000000000000001\n", 0, "more than 20 digits", true},
		{"19999999999999999999\n", 0, "overflows", true},
		{"11\n0123456789A", 10, "exceeds the limit of 10 bytes", true},
		{"5\nabc", 0, "unexpected EOF", false},
		{"12", 0, "unexpected EOF", false},
	} {
		r := NewReader(strings.NewReader(c.in), c.max)
		_, err := r.ReadRecord()
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%q: got %v, want %q", c.in, err, c.wantErr)
			continue
		}
		var fe *FormatError
		if errors.As(err, &fe) != c.format {
			t.Errorf("%q: FormatError = %v", c.in, !c.format)
		}
		// The error sticks: a stream out of step cannot resync.
		if _, err2 := r.ReadRecord(); err2 != err {
			t.Errorf("%q: second read gave %v", c.in, err2)
		}
	}
}

func TestWriterRefusesEmptyRecords(t *testing.T) {
	if err := NewWriter(io.Discard).WriteRecord(nil); err == nil {
		t.Fatal("want an error")
	}
	if got := string(Frame([]byte("hi"))); got != "2\nhi" {
		t.Fatalf("Frame = %q", got)
	}
}

// FuzzReader: no input panics, memory stays bounded, and the records read
// re-frame into a stream that reads back the same records.
func FuzzReader(f *testing.F) {
	f.Add([]byte("20\n{\"type\":\"HEARTBEAT\"}"))
	f.Add([]byte("3\nabc4\ndefg"))
	f.Add([]byte("0\n"))
	f.Add([]byte("99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 1<<16)
		var recs [][]byte
		var re []byte
		total := 0
		for {
			rec, err := r.ReadRecord()
			if err != nil {
				break
			}
			if len(rec) == 0 || len(rec) > 1<<16 {
				t.Fatalf("record of %d bytes", len(rec))
			}
			total += len(rec)
			recs = append(recs, rec)
			re = append(re, Frame(rec)...)
		}
		if total > len(data) {
			t.Fatalf("read %d bytes of records from %d bytes of input", total, len(data))
		}
		r2 := NewReader(bytes.NewReader(re), 1<<16)
		for i, want := range recs {
			got, err := r2.ReadRecord()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("record %d does not survive re-framing: %v", i, err)
			}
		}
	})
}

func BenchmarkReadRecord(b *testing.B) {
	rec := bytes.Repeat([]byte("x"), 900) // about an OFFERS event
	data := bytes.Repeat(Frame(rec), 1000)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		r := NewReader(bytes.NewReader(data), 0)
		for {
			if _, err := r.ReadRecord(); err != nil {
				break
			}
		}
	}
}
