package consumer

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuantityFromOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, unit, output, input string
		want                      float64
	}{
		{"images", "image", `{"images":[{"url":"a"},{"url":"b"}]}`, `{}`, 2},
		{"no images", "image", `{"text":"x"}`, `{}`, 0},
		{"megapixels", "megapixel", `{"images":[{"width":1024,"height":768},{"width":1000,"height":1000}]}`, `{}`, 1.7864},
		{"megapixels without size", "megapixel", `{"images":[{"url":"a"}]}`, `{}`, 1},
		{"video duration in output", "second", `{"video":{"url":"v","duration":5.5}}`, `{"duration":"10"}`, 5.5},
		{"video duration from input string", "second", `{"video":{"url":"v"}}`, `{"duration":"10"}`, 10},
		{"video duration from input number", "second", `{"video":{"url":"v"}}`, `{"duration":5}`, 5},
		{"video duration unknown", "second", `{"video":{"url":"v"}}`, `{}`, 1},
		{"request", "request", `{"anything":1}`, `{}`, 1},
		{"garbage output", "image", `not json`, `{}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.InDelta(t, tt.want, quantity(tt.unit, json.RawMessage(tt.output), json.RawMessage(tt.input)), 1e-9)
		})
	}
}

// quantity reads fal's output: never a panic, never a negative amount.
func FuzzQuantity(f *testing.F) {
	f.Add("megapixel", `{"images":[{"width":1024,"height":768}]}`, `{}`)
	f.Add("second", `{"video":{"duration":"x"}}`, `{"duration":[1]}`)
	f.Fuzz(func(t *testing.T, unit, output, input string) {
		if q := quantity(unit, json.RawMessage(output), json.RawMessage(input)); q < 0 {
			t.Fatalf("negative quantity %v", q)
		}
	})
}

// fal's unit names onto spend.prices' units; anything falbridge cannot
// measure from a result is unknown.
func TestConfigUnit(t *testing.T) {
	t.Parallel()
	tests := []struct{ fal, want string }{
		{"image", "image"}, {"Images", "image"}, {"per image", "image"}, {"output_images", "image"},
		{"megapixels", "megapixel"}, {"MP", "megapixel"}, {"megapixel", "megapixel"},
		{"video seconds", "second"}, {"seconds", "second"}, {"video_second", "second"}, {"per-second", "second"},
		{"request", "request"}, {"per_request", "request"}, {"Requests", "request"},
		{"compute seconds", ""}, {"gpu seconds", ""}, {"1M tokens", ""}, {"", ""}, {"minutes", ""},
	}
	for _, tt := range tests {
		got, ok := configUnit(tt.fal)
		require.Equal(t, tt.want, got, tt.fal)
		require.Equal(t, tt.want != "", ok, tt.fal)
	}
}
