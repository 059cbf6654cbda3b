package falclient

import (
	"bytes"
	"fmt"
	"io"
)

// sseReader is a small Server-Sent Events parser (WHATWG HTML §9.2): it
// returns the data of each event, the "data:" lines joined with "\n". It
// accepts \n, \r\n and lone \r line ends, skips a leading BOM, comments and
// the event, id and retry fields, and dispatches a last event that is not
// followed by a blank line at EOF. Lines and event data longer than max
// bytes fail with ErrResponseTooLarge.
type sseReader struct {
	r      io.Reader
	max    int
	buf    []byte
	start  int
	end    int
	err    error // sticky read error (io.EOF at end)
	skipLF bool  // the previous line ended with '\r': skip a following '\n'
	bom    bool  // the BOM check has been done
	line   []byte
}

const sseChunk = 32 << 10

func newSSEReader(r io.Reader, max int) *sseReader {
	return &sseReader{r: r, max: max, buf: make([]byte, sseChunk)}
}

// fill reads more data into the buffer; it returns false at EOF or error.
func (s *sseReader) fill() bool {
	if s.err != nil {
		return false
	}
	if s.start > 0 {
		s.end = copy(s.buf, s.buf[s.start:s.end])
		s.start = 0
	}
	for {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
		}
		if n > 0 || err != nil {
			return n > 0
		}
	}
}

// readLine returns the next line without its terminator. At the end of the
// input it returns a final unterminated line, then io.EOF (or the read
// error).
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	if !s.bom {
		s.bom = true
		for s.end-s.start < 3 && s.fill() {
		}
		if bytes.HasPrefix(s.buf[s.start:s.end], []byte("\xef\xbb\xbf")) {
			s.start += 3
		}
	}
	for {
		if s.start == s.end && !s.fill() {
			if len(s.line) > 0 {
				return s.line, nil
			}
			return nil, s.err
		}
		if s.skipLF {
			s.skipLF = false
			if s.buf[s.start] == '\n' {
				s.start++
				continue
			}
		}
		chunk := s.buf[s.start:s.end]
		i := bytes.IndexAny(chunk, "\r\n")
		if i < 0 {
			s.line = append(s.line, chunk...)
			s.start = s.end
			if len(s.line) > s.max {
				return nil, fmt.Errorf("%w: SSE line longer than %d bytes", ErrResponseTooLarge, s.max)
			}
			continue
		}
		s.line = append(s.line, chunk[:i]...)
		s.start += i + 1
		if chunk[i] == '\r' {
			s.skipLF = true
		}
		if len(s.line) > s.max {
			return nil, fmt.Errorf("%w: SSE line longer than %d bytes", ErrResponseTooLarge, s.max)
		}
		return s.line, nil
	}
}

// next returns the data of the next event that has at least one data line,
// as a fresh slice. It returns io.EOF at the end of the stream, or the read
// error.
func (s *sseReader) next() ([]byte, error) {
	var data []byte
	has := false
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && has {
				return data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if has {
				return data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(field) != "data" {
			continue // event, id, retry and unknown fields
		}
		if has {
			data = append(data, '\n')
		}
		if data == nil {
			data = make([]byte, 0, len(value))
		}
		data = append(data, value...)
		has = true
		if len(data) > s.max {
			return nil, fmt.Errorf("%w: SSE event larger than %d bytes", ErrResponseTooLarge, s.max)
		}
	}
}
