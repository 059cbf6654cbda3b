package falsim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestImageFileSize(t *testing.T) {
	t.Parallel()
	for name, want := range map[string][2]int{
		"penguin/x_0_1024x768.png": {1024, 768},
		"x_3_7x9.jpg":              {7, 9},
		"penguin/x_0.png":          {mediaSize, mediaSize},
		"x_0_0x768.png":            {mediaSize, mediaSize},
		"x_0_20000x5.png":          {mediaSize, mediaSize},
		"x_0_-1x5.png":             {mediaSize, mediaSize},
		"x_0_12x.png":              {mediaSize, mediaSize},
		"a_1x2/b.png":              {mediaSize, mediaSize},
	} {
		w, h := imageFileSize(name)
		require.Equal(t, want, [2]int{w, h}, name)
	}
}

// FuzzImageFileSize: any /files name gives a size the simulator may
// generate: positive, within maxDimension, and within maxMediaPixels once
// fitted.
func FuzzImageFileSize(f *testing.F) {
	for _, s := range []string{"penguin/x_0_1024x768.png", "x_0.png", "x_0_14142x14142.jpg", "_x.", "x_0_1x99999999999999999999.png", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		w, h := imageFileSize(name)
		if w < 1 || h < 1 || w > maxDimension || h > maxDimension {
			t.Fatalf("%q: %dx%d", name, w, h)
		}
		fw, fh := fitPixels(w, h)
		if fw < 1 || fh < 1 || fw*fh > maxMediaPixels || fw > w || fh > h {
			t.Fatalf("%q: %dx%d fitted to %dx%d", name, w, h, fw, fh)
		}
	})
}
