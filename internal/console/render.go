package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// page is what every template's layout needs.
type page struct {
	Title  string
	Prefix string
	Path   string
	Took   string
	// Refresh reloads the page every two seconds (a job still moving).
	Refresh bool
	start   time.Time
}

func (c *Console) newPage(r *http.Request, title string) page {
	return page{Title: title, Prefix: strings.TrimSuffix(Prefix, "/"), Path: r.URL.Path, start: time.Now()}
}

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000")
	},
	"rfc3339": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	},
}

// parsePages parses each page template with the shared layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout").Funcs(funcs).ParseFS(webFS, "web/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(webFS, "web/pages/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		t, err := template.Must(layout.Clone()).ParseFS(webFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return pages, nil
}

// tooker lets render stamp the time a page took into its own footer.
type tooker interface{ took() *page }

func (p *page) took() *page { return p }

func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, data tooker) {
	p := data.took()
	p.Took = time.Since(p.start).Round(10 * time.Microsecond).String()
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, "layout.html", data); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "render error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Server-Timing", "read;dur="+fmt.Sprintf("%.1f", float64(time.Since(p.start).Microseconds())/1000))
	_, _ = w.Write(b.Bytes())
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.log.Warn("console: page failed", "path", r.URL.Path, "err", err)
	http.Error(w, "console: "+err.Error(), http.StatusBadGateway)
}
