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
		{"png of a preset size", "fal-ai/flux/schnell", map[string]any{"prompt": "x", "image_size": "portrait_16_9"}, "image/png", "png"},
		{"png of a custom size", "fal-ai/flux/schnell", map[string]any{"prompt": "x", "image_size": map[string]any{"width": 300, "height": 200}}, "image/png", "png"},
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
			var width, height int64
			if v, ok := out["video"].(map[string]any); ok {
				fileURL = v["url"].(string)
				require.Equal(t, "video/mp4", v["content_type"])
			} else {
				im := out["images"].([]any)[0].(map[string]any)
				fileURL = im["url"].(string)
				var err error
				width, err = im["width"].(json.Number).Int64()
				require.NoError(t, err)
				height, err = im["height"].(json.Number).Int64()
				require.NoError(t, err)
			}
			f := b.do(http.MethodGet, fileURL, nil, "Authorization", "")
			require.Equal(t, http.StatusOK, f.code)
			require.Equal(t, tc.ctype, f.header.Get("Content-Type"))
			require.Equal(t, tc.ctype, http.DetectContentType(f.body), "sniffed as what it claims")
			if tc.decode != "" {
				img, format, err := image.Decode(bytes.NewReader(f.body))
				require.NoError(t, err)
				require.Equal(t, tc.decode, format)
				// The file has the size the output states (it once was
				// 64×64 whatever the output said).
				require.Equal(t, [2]int64{width, height}, [2]int64{int64(img.Bounds().Dx()), int64(img.Bounds().Dy())})
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
	// A name without a size is a small square; one over the pixel budget
	// is scaled down, keeping its aspect ratio.
	for name, want := range map[string][2]int{"/files/x/y.png": {64, 64}, "/files/x/y_0_14000x7000.png": {2896, 1448}, "/files/x/y_0_0x5.png": {64, 64}} {
		r := b.do(http.MethodGet, name, nil)
		require.Equal(t, http.StatusOK, r.code, name)
		cfg, _, err := image.DecodeConfig(bytes.NewReader(r.body))
		require.NoError(t, err, name)
		require.Equal(t, want, [2]int{cfg.Width, cfg.Height}, name)
	}
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
