package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// downloadTimeout bounds the download of one file.
const downloadTimeout = 2 * time.Minute

// commonExt are the extensions preferred for the media types fal returns;
// mime.ExtensionsByType answers others.
var commonExt = map[string]string{
	"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
	"video/mp4": ".mp4", "video/webm": ".webm", "audio/mpeg": ".mp3", "audio/wav": ".wav",
	"application/json": ".json", "text/plain": ".txt", "model/gltf-binary": ".glb",
}

// downloadMedia saves every file the output points to into dir (created if
// needed) as <id>_<n>.<ext>, n counting from 0 in the order of findMedia,
// the extension from the Content-Type, else from the URL. http(s) URLs are
// fetched with a timeout each; data: URLs are decoded. It returns the paths
// written; the first failure ends it.
func downloadMedia(ctx context.Context, dir, id string, ms []media) ([]string, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	var paths []string
	for n, m := range ms {
		p, err := downloadOne(ctx, dir, fmt.Sprintf("%s_%d", id, n), m)
		if err != nil {
			return paths, fmt.Errorf("download %s: %w", shorten(m.URL, 100), err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func downloadOne(ctx context.Context, dir, base string, m media) (string, error) {
	u, err := url.Parse(m.URL)
	if err != nil {
		return "", err
	}
	var (
		body  io.Reader
		ctype = m.ContentType
	)
	switch u.Scheme {
	case "data":
		mt, data, err := decodeDataURL(m.URL)
		if err != nil {
			return "", err
		}
		body, ctype = strings.NewReader(string(data)), mt
	case "http", "https":
		ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			return "", fmt.Errorf("HTTP %s", resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			ctype = ct
		}
		body = resp.Body
	default:
		return "", fmt.Errorf("unsupported URL scheme %q", u.Scheme)
	}
	name := filepath.Join(dir, base+extension(ctype, u.Path))
	f, err := os.Create(name)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// extension picks a file extension from a media type, else from the URL
// path, else ".bin".
func extension(ctype, urlPath string) string {
	if mt, _, err := mime.ParseMediaType(ctype); err == nil && mt != "application/octet-stream" {
		if e, ok := commonExt[mt]; ok {
			return e
		}
		if es, _ := mime.ExtensionsByType(mt); len(es) > 0 {
			return es[0]
		}
	}
	if e := strings.ToLower(path.Ext(urlPath)); len(e) > 1 && len(e) <= 8 && strings.Trim(e[1:], "abcdefghijklmnopqrstuvwxyz0123456789") == "" {
		return e
	}
	return ".bin"
}

// decodeDataURL decodes a data: URL (RFC 2397).
func decodeDataURL(s string) (mediaType string, data []byte, err error) {
	rest, ok := strings.CutPrefix(s, "data:")
	meta, payload, found := strings.Cut(rest, ",")
	if !ok || !found {
		return "", nil, errors.New("malformed data URL")
	}
	b64 := strings.HasSuffix(meta, ";base64")
	mediaType = strings.TrimSuffix(meta, ";base64")
	if b64 {
		data, err = base64.StdEncoding.DecodeString(payload)
		if err != nil {
			data, err = base64.RawStdEncoding.DecodeString(payload)
		}
		return mediaType, data, err
	}
	dec, err := url.PathUnescape(payload)
	return mediaType, []byte(dec), err
}
