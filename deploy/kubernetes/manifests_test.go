package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; strict decoding rejects any other field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// workload is a Deployment's or StatefulSet's pod template, by name.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	pod        corev1.PodTemplateSpec
}

// manifests are the decoded objects of every resource file.
type manifests struct {
	kust        kustomization
	namespaces  map[string]*corev1.Namespace
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pvcs        map[string]*corev1.PersistentVolumeClaim
	services    map[string]*corev1.Service
	workloads   map[string]*workload
	statefulSet map[string]*appsv1.StatefulSet
}

// strict decodes YAML into v, failing on unknown or duplicate fields.
func strict(data []byte, v any) error {
	return yaml.UnmarshalStrict(data, v)
}

// splitDocs splits a multi-document YAML file.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// load reads kustomization.yaml and strictly decodes every resource it
// lists into its k8s.io/api type.
func load(t *testing.T, dir string) *manifests {
	t.Helper()
	m := &manifests{
		namespaces: map[string]*corev1.Namespace{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, pvcs: map[string]*corev1.PersistentVolumeClaim{},
		services: map[string]*corev1.Service{}, workloads: map[string]*workload{},
		statefulSet: map[string]*appsv1.StatefulSet{},
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := strict(data, &m.kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion %q kind %q", m.kust.APIVersion, m.kust.Kind)
	}
	// Every manifest in the directory is a resource of the kustomization.
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	listed := map[string]bool{}
	for _, r := range m.kust.Resources {
		listed[r] = true
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is not listed in kustomization.yaml resources", b)
		}
	}
	for _, r := range m.kust.Resources {
		data, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("kustomization.yaml resource %s: %v", r, err)
		}
		for i, doc := range splitDocs(data) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", r, i, err)
			}
			where := fmt.Sprintf("%s document %d (%s %s)", r, i, tm.APIVersion, tm.Kind)
			decode := func(v any) {
				if err := strict(doc, v); err != nil {
					t.Fatalf("%s: strict decoding: %v", where, err)
				}
			}
			switch tm.APIVersion + "/" + tm.Kind {
			case "v1/Namespace":
				var o corev1.Namespace
				decode(&o)
				m.namespaces[o.Name] = &o
			case "v1/ConfigMap":
				var o corev1.ConfigMap
				decode(&o)
				m.configMaps[o.Name] = &o
			case "v1/Secret":
				var o corev1.Secret
				decode(&o)
				m.secrets[o.Name] = &o
			case "v1/PersistentVolumeClaim":
				var o corev1.PersistentVolumeClaim
				decode(&o)
				m.pvcs[o.Name] = &o
			case "v1/Service":
				var o corev1.Service
				decode(&o)
				m.services[o.Name] = &o
			case "apps/v1/Deployment":
				var o appsv1.Deployment
				decode(&o)
				m.workloads[o.Name] = &workload{kind: "Deployment", name: o.Name, selector: o.Spec.Selector, pod: o.Spec.Template}
			case "apps/v1/StatefulSet":
				var o appsv1.StatefulSet
				decode(&o)
				m.workloads[o.Name] = &workload{kind: "StatefulSet", name: o.Name, selector: o.Spec.Selector, pod: o.Spec.Template}
				m.statefulSet[o.Name] = &o
			default:
				t.Fatalf("%s: a kind this test does not know: add it to load()", where)
			}
		}
	}
	return m
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a probe's or Service's target port in a pod.
func containerPort(pod corev1.PodSpec, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, c := range pod.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

// daemonConfig is a --config file from the ConfigMap: flag name -> value.
func daemonConfig(t *testing.T, m *manifests, cm, key string) map[string]string {
	t.Helper()
	c, ok := m.configMaps[cm]
	if !ok {
		t.Fatalf("no ConfigMap %s", cm)
	}
	raw, ok := c.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm, key)
	}
	var out map[string]any
	if err := yaml.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("ConfigMap %s key %s: %v", cm, key, err)
	}
	s := map[string]string{}
	for k, v := range out {
		s[k] = fmt.Sprint(v)
	}
	return s
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

// configFile is the --config argument of a container and the ConfigMap key
// mounted at that path.
func configFile(t *testing.T, w *workload, c corev1.Container) (cm, key string) {
	t.Helper()
	var path string
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		}
	}
	if path == "" {
		t.Fatalf("%s %s container %s: no --config=FILE argument", w.kind, w.name, c.Name)
	}
	for _, vm := range c.VolumeMounts {
		if rel, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/"); ok {
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == vm.Name && v.ConfigMap != nil {
					for _, it := range v.ConfigMap.Items {
						if it.Path == rel {
							return v.ConfigMap.Name, it.Key
						}
					}
					return v.ConfigMap.Name, rel
				}
			}
		}
	}
	t.Fatalf("%s %s container %s: --config=%s is not in a mounted ConfigMap", w.kind, w.name, c.Name, path)
	return "", ""
}

var envRefRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// TestManifests strictly decodes every manifest and checks the references
// between them.
func TestManifests(t *testing.T) {
	m := load(t, ".")

	if _, ok := m.namespaces[m.kust.Namespace]; !ok {
		t.Errorf("kustomization namespace %q has no Namespace manifest", m.kust.Namespace)
	}
	images := map[string]bool{}
	for _, im := range m.kust.Images {
		images[im.Name] = true
	}

	for _, w := range m.workloads {
		if w.selector == nil || !subset(w.selector.MatchLabels, w.pod.Labels) {
			t.Errorf("%s %s: selector %v does not match its pod labels %v", w.kind, w.name, w.selector, w.pod.Labels)
		}
		spec := w.pod.Spec
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 10001 {
			t.Errorf("%s %s: pod must run as non-root uid 10001 (the image's flow user)", w.kind, w.name)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			if v.ConfigMap != nil {
				cm, ok := m.configMaps[v.ConfigMap.Name]
				if !ok {
					t.Errorf("%s %s volume %s: no ConfigMap %s", w.kind, w.name, v.Name, v.ConfigMap.Name)
					continue
				}
				for _, it := range v.ConfigMap.Items {
					if _, ok := cm.Data[it.Key]; !ok {
						t.Errorf("%s %s volume %s: ConfigMap %s has no key %s", w.kind, w.name, v.Name, cm.Name, it.Key)
					}
				}
			}
			if v.PersistentVolumeClaim != nil {
				if _, ok := m.pvcs[v.PersistentVolumeClaim.ClaimName]; !ok {
					t.Errorf("%s %s volume %s: no PersistentVolumeClaim %s", w.kind, w.name, v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
		for i, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			initContainer := i < len(spec.InitContainers)
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			name := c.Image
			if i := strings.LastIndexByte(name, ':'); i > 0 {
				name = name[:i]
			}
			if !images[name] {
				t.Errorf("%s: image %s has no images entry in kustomization.yaml", where, c.Image)
			}
			for _, vm := range c.VolumeMounts {
				if _, ok := volumes[vm.Name]; !ok {
					t.Errorf("%s: volumeMount %s names no volume", where, vm.Name)
				}
			}
			req := c.Resources.Requests
			if req.Cpu().IsZero() || req.Memory().IsZero() {
				t.Errorf("%s: needs cpu and memory requests", where)
			}
			defined := map[string]bool{}
			for _, e := range c.Env {
				for _, ref := range envRefRE.FindAllStringSubmatch(e.Value, -1) {
					if !defined[ref[1]] {
						t.Errorf("%s: env %s uses $(%s), which is not defined before it", where, e.Name, ref[1])
					}
				}
				defined[e.Name] = true
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					s, ok := m.secrets[r.Name]
					if !ok {
						t.Errorf("%s: env %s: no Secret %s", where, e.Name, r.Name)
					} else if _, ok := s.StringData[r.Key]; !ok {
						if _, ok := s.Data[r.Key]; !ok {
							t.Errorf("%s: env %s: Secret %s has no key %s", where, e.Name, r.Name, r.Key)
						}
					}
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					if cm, ok := m.configMaps[r.Name]; !ok {
						t.Errorf("%s: env %s: no ConfigMap %s", where, e.Name, r.Name)
					} else if _, ok := cm.Data[r.Key]; !ok {
						t.Errorf("%s: env %s: ConfigMap %s has no key %s", where, e.Name, r.Name, r.Key)
					}
				}
			}
			if initContainer {
				continue
			}
			for what, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s: no HTTP %s", where, what)
					continue
				}
				if _, ok := containerPort(corev1.PodSpec{Containers: []corev1.Container{c}}, p.HTTPGet.Port); !ok {
					t.Errorf("%s: %s port %s is not a port of the container", where, what, p.HTTPGet.Port.String())
				}
			}
		}
	}

	// Every Service selects a workload, and its target ports are ports of
	// that workload's containers with the same number.
	for _, s := range m.services {
		var sel *workload
		for _, w := range m.workloads {
			if subset(s.Spec.Selector, w.pod.Labels) {
				if sel != nil {
					t.Errorf("Service %s selects both %s and %s", s.Name, sel.name, w.name)
				}
				sel = w
			}
		}
		if sel == nil {
			t.Errorf("Service %s: selector %v matches no workload", s.Name, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			cp, ok := containerPort(sel.pod.Spec, p.TargetPort)
			if !ok {
				t.Errorf("Service %s port %s: target %s is not a container port of %s", s.Name, p.Name, p.TargetPort.String(), sel.name)
			} else if cp.ContainerPort != p.Port {
				t.Errorf("Service %s port %s: %d, container port %s is %d", s.Name, p.Name, p.Port, cp.Name, cp.ContainerPort)
			}
		}
	}

	jm, tm := m.workloads["flow-jobmanager"], m.workloads["flow-taskmanager"]
	if jm == nil || jm.kind != "Deployment" || tm == nil || tm.kind != "StatefulSet" {
		t.Fatalf("want Deployment flow-jobmanager and StatefulSet flow-taskmanager, have %v", keys(m.workloads))
	}
	checkDaemon := func(w *workload, binary string) map[string]string {
		if len(w.pod.Spec.Containers) != 1 {
			t.Fatalf("%s: want one container", w.name)
		}
		c := w.pod.Spec.Containers[0]
		if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/"+binary {
			t.Errorf("%s: command %v, want [/usr/local/bin/%s] (the image layout)", w.name, c.Command, binary)
		}
		cm, key := configFile(t, w, c)
		cfg := daemonConfig(t, m, cm, key)
		for flag, port := range map[string]string{"rpc-address": "rpc", "http-address": "http"} {
			cp, ok := containerPort(w.pod.Spec, intstr.FromString(port))
			if !ok {
				t.Errorf("%s: no container port named %s", w.name, port)
			} else if got := portOf(t, cfg[flag]); got != cp.ContainerPort {
				t.Errorf("%s: %s %s listens on %d, container port %s is %d", w.name, key, flag, got, port, cp.ContainerPort)
			}
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
			c.ReadinessProbe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s: readiness probe must GET /readyz on port http", w.name)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/livez" ||
			c.LivenessProbe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s: liveness probe must GET /livez on port http", w.name)
		}
		if cfg["data-dir"] == "" {
			t.Errorf("%s: %s sets no data-dir", w.name, key)
		} else {
			mounted := false
			for _, vm := range c.VolumeMounts {
				mounted = mounted || vm.MountPath == cfg["data-dir"]
			}
			if !mounted {
				t.Errorf("%s: data-dir %s is not a volume mount (the root file system is read-only)", w.name, cfg["data-dir"])
			}
		}
		return cfg
	}
	jmCfg := checkDaemon(jm, "jobmanager")
	tmCfg := checkDaemon(tm, "taskmanager")

	// The TaskManagers' jobmanager address is a Service of the JobManager.
	host, port, err := net.SplitHostPort(tmCfg["jobmanager"])
	if err != nil {
		t.Fatalf("taskmanager.yaml jobmanager %q: %v", tmCfg["jobmanager"], err)
	}
	if s, ok := m.services[host]; !ok || !subset(s.Spec.Selector, jm.pod.Labels) {
		t.Errorf("taskmanager.yaml jobmanager %s: no Service %s selecting the JobManager", tmCfg["jobmanager"], host)
	} else if !hasPort(s, port) {
		t.Errorf("taskmanager.yaml jobmanager %s: Service %s has no port %s", tmCfg["jobmanager"], host, port)
	}

	// The StatefulSet's governing Service is headless and selects it; each
	// pod advertises its DNS name under it.
	sts := m.statefulSet["flow-taskmanager"]
	gov, ok := m.services[sts.Spec.ServiceName]
	if !ok || gov.Spec.ClusterIP != corev1.ClusterIPNone || !subset(gov.Spec.Selector, tm.pod.Labels) {
		t.Errorf("StatefulSet serviceName %q: want a headless Service selecting the TaskManagers", sts.Spec.ServiceName)
	}
	env := map[string]string{}
	for _, e := range tm.pod.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if want := "$(POD_NAME)." + sts.Spec.ServiceName + ".$(POD_NAMESPACE).svc"; env["FLOW_ADVERTISE_HOST"] != want {
		t.Errorf("TaskManager FLOW_ADVERTISE_HOST %q, want %q", env["FLOW_ADVERTISE_HOST"], want)
	}
	if env["FLOW_ID"] != "$(POD_NAME)" {
		t.Errorf("TaskManager FLOW_ID %q, want $(POD_NAME) (stable per StatefulSet pod)", env["FLOW_ID"])
	}

	// Pod anti-affinity spreads TaskManagers over nodes.
	aff := tm.pod.Spec.Affinity
	spread := false
	if aff != nil && aff.PodAntiAffinity != nil {
		for _, wt := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			term := wt.PodAffinityTerm
			spread = spread || (term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil && subset(term.LabelSelector.MatchLabels, tm.pod.Labels))
		}
		for _, term := range aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			spread = spread || (term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil && subset(term.LabelSelector.MatchLabels, tm.pod.Labels))
		}
	}
	if !spread {
		t.Error("TaskManagers need pod anti-affinity on kubernetes.io/hostname selecting their own labels")
	}

	// Checkpoints and savepoints on S3, with credentials from a Secret in
	// both daemons.
	for _, flag := range []string{"checkpoint-storage", "savepoint-dir"} {
		u := jmCfg[flag]
		if !strings.HasPrefix(u, "s3://") {
			t.Errorf("jobmanager.yaml %s %q is not on S3", flag, u)
		}
		if ep := regexp.MustCompile(`endpoint=http://([^:&/]+):(\d+)`).FindStringSubmatch(u); ep != nil {
			if s, ok := m.services[ep[1]]; !ok || !hasPort(s, ep[2]) {
				t.Errorf("jobmanager.yaml %s: endpoint %s:%s is no Service port of these manifests", flag, ep[1], ep[2])
			}
		}
	}
	for _, w := range []*workload{jm, tm} {
		refs := map[string]bool{}
		for _, e := range w.pod.Spec.Containers[0].Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				refs[e.Name] = true
			}
		}
		if !refs["AWS_ACCESS_KEY_ID"] || !refs["AWS_SECRET_ACCESS_KEY"] {
			t.Errorf("%s: S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) must come from a Secret", w.name)
		}
	}
}

func hasPort(s *corev1.Service, port string) bool {
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// daemon is a jobmanager or taskmanager process started by the test.
type daemon struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	rpc    chan string
	http   chan string
	exited chan struct{}
}

var listenRE = regexp.MustCompile(`"msg":"listening","rpc_address":"([^"]+)"(?:,"http_address":"([^"]+)")?`)

func startDaemon(t *testing.T, bin string, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), rpc: make(chan string, 1), http: make(chan string, 1), exited: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), env...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = io.Discard
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if mm := listenRE.FindStringSubmatch(sc.Text()); mm != nil {
				d.rpc <- mm[1]
				d.http <- mm[2]
			}
		}
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			d.mu.Lock()
			t.Logf("---- %s log ----\n%s", filepath.Base(bin), d.log.String())
			d.mu.Unlock()
		}
	})
	return d
}

func (d *daemon) addresses(t *testing.T) (rpc, http string) {
	t.Helper()
	select {
	case rpc = <-d.rpc:
		return rpc, <-d.http
	case <-d.exited:
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Fatalf("%s exited before listening:\n%s", d.cmd.Path, d.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not log its addresses", d.cmd.Path)
	}
	return "", ""
}

func get(url string) (int, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestDaemonsTakeTheConfigMap runs the real jobmanager and taskmanager with
// the ConfigMap's config files (listen addresses, data dirs and storage
// overridden by flags for a local run): every key must be a flag the
// daemons accept, and the probe paths of the manifests must answer 200 on
// the daemons' HTTP ports.
func TestDaemonsTakeTheConfigMap(t *testing.T) {
	m := load(t, ".")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(os.PathSeparator), "./cmd/jobmanager", "./cmd/taskmanager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build the daemons: %v\n%s", err, out)
	}
	dir := t.TempDir()
	writeConfig := func(w *workload) string {
		c := w.pod.Spec.Containers[0]
		cm, key := configFile(t, w, c)
		p := filepath.Join(dir, key)
		if err := os.WriteFile(p, []byte(m.configMaps[cm].Data[key]), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	probes := func(w *workload) []string {
		c := w.pod.Spec.Containers[0]
		return []string{c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path}
	}
	jmW, tmW := m.workloads["flow-jobmanager"], m.workloads["flow-taskmanager"]
	local := []string{"--rpc-address=127.0.0.1:0", "--http-address=127.0.0.1:0"}
	jm := startDaemon(t, filepath.Join(bin, "jobmanager"), nil, append([]string{"--config=" + writeConfig(jmW),
		"--data-dir=" + filepath.Join(dir, "jm"),
		"--checkpoint-storage=file://" + filepath.ToSlash(filepath.Join(dir, "checkpoints")),
		"--savepoint-dir=file://" + filepath.ToSlash(filepath.Join(dir, "savepoints"))}, local...)...)
	jmRPC, jmHTTP := jm.addresses(t)
	tm := startDaemon(t, filepath.Join(bin, "taskmanager"), []string{"FLOW_ID=flow-taskmanager-0"},
		append([]string{"--config=" + writeConfig(tmW), "--data-dir=" + filepath.Join(dir, "tm"), "--jobmanager=" + jmRPC}, local...)...)
	_, tmHTTP := tm.addresses(t)
	for _, d := range []struct {
		name, addr string
		paths      []string
	}{{"jobmanager", jmHTTP, probes(jmW)}, {"taskmanager", tmHTTP, probes(tmW)}} {
		for _, p := range d.paths {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, body := get("http://" + d.addr + p)
				if code == http.StatusOK {
					t.Logf("%s GET %s: %d %s", d.name, p, code, body)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s GET %s: %d %s, want 200", d.name, p, code, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	// A path the daemons do not serve fails, so the check above means
	// something.
	if code, _ := get("http://" + jmHTTP + "/no-such-probe"); code == http.StatusOK {
		t.Fatalf("GET /no-such-probe answered 200")
	}
}
