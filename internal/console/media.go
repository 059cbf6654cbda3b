package console

import (
	"encoding/json"
	"maps"
	"net/url"
	"path"
	"slices"
	"strings"
)

// media is one image, video or audio file named in a result's output.
type media struct {
	Kind        string // "image", "video", "audio"
	URL         string
	ContentType string
	Width       int
	Height      int
}

// maxMedia bounds the files shown for one result.
const maxMedia = 64

var extKinds = map[string]string{
	".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".gif": "image", ".avif": "image",
	".mp4": "video", ".webm": "video", ".mov": "video",
	".mp3": "audio", ".wav": "audio", ".ogg": "audio", ".m4a": "audio",
}

// findMedia walks fal's output (untouched JSON of any shape) for files:
// objects with a "url" (fal's File: url, content_type, width, height) and
// bare http(s) URL strings whose path ends in a known extension. Only
// http and https URLs are kept: the page puts them in src attributes.
func findMedia(output json.RawMessage) []media {
	var v any
	if json.Unmarshal(output, &v) != nil {
		return nil
	}
	var out []media
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		if len(out) >= maxMedia {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			if u, ok := x["url"].(string); ok {
				ct, _ := x["content_type"].(string)
				if m, ok := classify(u, ct); ok && !seen[u] {
					seen[u] = true
					m.Width, m.Height = intOf(x["width"]), intOf(x["height"])
					out = append(out, m)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				if k != "url" {
					walk(x[k])
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if m, ok := classify(x, ""); ok && !seen[x] {
				seen[x] = true
				out = append(out, m)
			}
		}
	}
	walk(v)
	return out
}

func classify(raw, contentType string) (media, bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return media{}, false
	}
	kind := ""
	if major, _, ok := strings.Cut(contentType, "/"); ok && (major == "image" || major == "video" || major == "audio") {
		kind = major
	} else {
		kind = extKinds[strings.ToLower(path.Ext(u.Path))]
	}
	if kind == "" {
		return media{}, false
	}
	return media{Kind: kind, URL: u.String(), ContentType: contentType}, true
}

func intOf(v any) int {
	if f, ok := v.(float64); ok && f > 0 && f < 1e6 {
		return int(f)
	}
	return 0
}
