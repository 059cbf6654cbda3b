package deploycheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var dashboardFile = filepath.Join(deployDir, "grafana", "falbridge-dashboard.json")

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckDashboard(data, falbridgeMetrics); err != nil {
		t.Fatal(err)
	}

	t.Run("ConfigMap", func(t *testing.T) {
		objs, err := Render(filepath.Join(deployDir, "grafana"))
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 {
			t.Fatalf("want one ConfigMap, got %d objects", len(objs))
		}
		cm, ok := objs[0].Typed.(*corev1.ConfigMap)
		if !ok || cm.Data[filepath.Base(dashboardFile)] != string(data) || cm.Labels["grafana_dashboard"] != "1" {
			t.Fatalf("want a ConfigMap labelled grafana_dashboard=1 holding the dashboard")
		}
	})

	// Each mistake must be caught.
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown metric", "falbridge_jobs_pending{", "falbridge_jobs_pendng{", "unknown metric falbridge_jobs_pendng"},
		{"unused metric", "falbridge_ambiguous_submits_total", "falbridge_submits_total", "falbridge_ambiguous_submits_total is on no panel"},
		{"unknown label", `kind=\"error\"`, `type=\"error\"`, `has no label "type"`},
		{"unknown grouping", "sum by (via)", "sum by (path)", `groups by "path"`},
		{"histogram without _bucket", "falbridge_fal_run_seconds_bucket{", "falbridge_fal_run_seconds{", "histogram falbridge_fal_run_seconds has no series"},
		{"counter without rate", "sum(rate(falbridge_triggers_received_total{instance=~\\\"$instance\\\"}[$__rate_interval]))", "sum(falbridge_triggers_received_total)", "must be used through rate()"},
		{"hard-coded data source", `"uid": "${datasource}"`, `"uid": "prometheus"`, "datasource must be"},
		{"overlap", `"x": 4,`, `"x": 2,`, "overlap"},
		{"not JSON", `"panels": [`, `"panels": [[`, "dashboard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(data), tc.old) {
				t.Fatalf("dashboard has no %q", tc.old)
			}
			bad := strings.Replace(string(data), tc.old, tc.new, 1)
			if tc.name == "unused metric" || tc.name == "histogram without _bucket" {
				bad = strings.ReplaceAll(string(data), tc.old, tc.new)
			}
			err := CheckDashboard([]byte(bad), falbridgeMetrics)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got: %v", tc.want, err)
			}
		})
	}
}
