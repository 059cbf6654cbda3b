package falsim_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

func TestMediaFiles(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: time.Millisecond})
	tests := []struct {
		name   string
		model  string
		input  map[string]any
		ctype  string
		decode string // image format, or "" for video
	}{
		{"png", "fal-ai/flux/schnell", map[string]any{"prompt": "x"}, "image/png", "png"},
		{"jpeg", "fal-ai/flux/dev", map[string]any{"prompt": "x", "output_format": "jpeg"}, "image/jpeg", "jpeg"},
		{"mp4", "fal-ai/kling-video/v1.6/standard/text-to-video", map[string]any{"prompt": "x"}, "video/mp4", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(http.MethodPost, "/run/"+tc.model, tc.input)
			require.Equal(t, http.StatusOK, r.code, "%s", r.body)
			out := r.json(t)
			var fileURL string
			if v, ok := out["video"].(map[string]any); ok {
				fileURL = v["url"].(string)
				require.Equal(t, "video/mp4", v["content_type"])
			} else {
				fileURL = out["images"].([]any)[0].(map[string]any)["url"].(string)
			}
			f := b.do(http.MethodGet, fileURL, nil, "Authorization", "")
			require.Equal(t, http.StatusOK, f.code)
			require.Equal(t, tc.ctype, f.header.Get("Content-Type"))
			require.Equal(t, tc.ctype, http.DetectContentType(f.body), "sniffed as what it claims")
			if tc.decode != "" {
				img, format, err := image.Decode(bytes.NewReader(f.body))
				require.NoError(t, err)
				require.Equal(t, tc.decode, format)
				require.Equal(t, 64, img.Bounds().Dx())
				return
			}
			boxes := topLevelBoxes(t, f.body)
			require.Equal(t, []string{"ftyp", "moov", "mdat"}, boxes)
			size, err := out["video"].(map[string]any)["file_size"].(json.Number).Int64()
			require.NoError(t, err)
			require.Equal(t, int64(len(f.body)), size)
		})
	}
	require.Equal(t, http.StatusNotFound, b.do(http.MethodGet, "/files/x/y.exe", nil).code)
	r := b.do(http.MethodGet, "/files/x/y.mp4", nil, "Range", "bytes=0-7")
	require.Equal(t, http.StatusPartialContent, r.code, "video supports range requests")
	require.Len(t, r.body, 8)
}

// topLevelBoxes walks an ISO BMFF file and returns its box types; the
// sizes must tile the file exactly.
func topLevelBoxes(t *testing.T, data []byte) []string {
	t.Helper()
	var types []string
	for off := 0; off < len(data); {
		require.GreaterOrEqual(t, len(data)-off, 8)
		size := int(binary.BigEndian.Uint32(data[off:]))
		require.GreaterOrEqual(t, size, 8)
		require.LessOrEqual(t, off+size, len(data))
		types = append(types, string(data[off+4:off+8]))
		off += size
	}
	return types
}
