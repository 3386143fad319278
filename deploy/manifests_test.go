package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/edgeproxy/edge/raftstore/peertls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/yaml"
)

const k8sDir = "k8s"

// decoder decodes manifests the way the API server reads them: the typed
// object is chosen by apiVersion and kind, and an unknown or duplicated
// field is an error (field names are case-sensitive).
func decoder() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}

// splitDocs splits a multi-document YAML stream, dropping empty documents.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// manifests is every object of deploy/k8s, decoded strictly.
type manifests struct {
	objects []runtime.Object
	// sts is the voters' StatefulSet (edge), replica the non-voters'
	// (edge-replica) that the HPA scales.
	sts         *appsv1.StatefulSet
	replica     *appsv1.StatefulSet
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpa         *autoscalingv2.HorizontalPodAutoscaler
	netpol      *networkingv1.NetworkPolicy
	fileOfIndex []string
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func decodeAll(t *testing.T, name string, b []byte) []runtime.Object {
	t.Helper()
	dec := decoder()
	var objs []runtime.Object
	for i, doc := range splitDocs(b) {
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s, document %d: %v", name, i+1, err)
		}
		if gvk.Kind == "" {
			t.Fatalf("%s, document %d: no kind", name, i+1)
		}
		objs = append(objs, obj)
	}
	return objs
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	kb, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(kb, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("kustomization.yaml: kind %q apiVersion %q", k.Kind, k.APIVersion)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.y*ml"))
	var onDisk []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			onDisk = append(onDisk, b)
		}
	}
	listed := slices.Clone(k.Resources)
	slices.Sort(listed)
	slices.Sort(onDisk)
	if !slices.Equal(listed, onDisk) {
		t.Fatalf("kustomization.yaml lists %v, deploy/k8s holds %v", listed, onDisk)
	}

	m := &manifests{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{}, pdbs: map[string]*policyv1.PodDisruptionBudget{}}
	for _, f := range k.Resources {
		b, err := os.ReadFile(filepath.Join(k8sDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range decodeAll(t, f, b) {
			m.objects = append(m.objects, obj)
			m.fileOfIndex = append(m.fileOfIndex, f)
			switch o := obj.(type) {
			case *appsv1.StatefulSet:
				switch {
				case o.Name == "edge" && m.sts == nil:
					m.sts = o
				case o.Name == "edge-replica" && m.replica == nil:
					m.replica = o
				default:
					t.Fatalf("%s: unexpected StatefulSet %s (want edge, the voters, and edge-replica, once each)", f, o.Name)
				}
			case *corev1.Service:
				m.services[o.Name] = o
			case *corev1.Secret:
				m.secrets[o.Name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				if m.hpa != nil {
					t.Fatalf("%s: a second HorizontalPodAutoscaler %s", f, o.Name)
				}
				m.hpa = o
			case *networkingv1.NetworkPolicy:
				m.netpol = o
			default:
				t.Fatalf("%s: unexpected %T", f, obj)
			}
		}
	}
	for _, o := range m.objects {
		if o.(interface{ GetNamespace() string }).GetNamespace() != "" {
			t.Errorf("%T sets a namespace; the manifests must stay namespace-agnostic", o)
		}
	}
	if m.sts == nil || m.replica == nil || len(m.pdbs) == 0 || m.hpa == nil || m.netpol == nil {
		t.Fatalf("missing objects: voter statefulset %v, replica statefulset %v, pdb %v, hpa %v, networkpolicy %v", m.sts != nil, m.replica != nil, len(m.pdbs) > 0, m.hpa != nil, m.netpol != nil)
	}
	return m
}

// container is the voters' edged container.
func (m *manifests) container(t *testing.T) *corev1.Container {
	t.Helper()
	return onlyContainer(t, m.sts)
}

// replicaContainer is the replicas' edged container.
func (m *manifests) replicaContainer(t *testing.T) *corev1.Container {
	t.Helper()
	return onlyContainer(t, m.replica)
}

func onlyContainer(t *testing.T, s *appsv1.StatefulSet) *corev1.Container {
	t.Helper()
	cs := s.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%s: want one container, got %d", s.Name, len(cs))
	}
	return &cs[0]
}

// podLabels are a voter pod's template labels; replicaLabels a replica's.
func (m *manifests) podLabels() labels.Set     { return m.sts.Spec.Template.Labels }
func (m *manifests) replicaLabels() labels.Set { return m.replica.Spec.Template.Labels }

// parseArgs reads --name=value arguments (a bare --name is "true").
func parseArgs(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			t.Fatalf("argument %q is not --flag=value", a)
		}
		name, val, hasVal := strings.Cut(name, "=")
		if !hasVal {
			val = "true"
		}
		if _, dup := out[name]; dup {
			t.Fatalf("flag --%s given twice", name)
		}
		out[name] = val
	}
	return out
}

// podArgs returns the StatefulSet's flags as pod ordinal's container sees
// them, with $(POD_NAME), $(NAMESPACE) and every env var with a literal
// value (CLUSTER_DOMAIN) expanded.
func podArgs(t *testing.T, c *corev1.Container, pod, ns string) map[string]string {
	t.Helper()
	pairs := []string{"$(POD_NAME)", pod, "$(NAMESPACE)", ns}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			pairs = append(pairs, "$("+e.Name+")", e.Value)
		}
	}
	r := strings.NewReplacer(pairs...)
	args := parseArgs(t, c.Args)
	for k, v := range args {
		args[k] = r.Replace(v)
	}
	return args
}

func port(t *testing.T, hostport string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", hostport, err)
	}
	return int32(n)
}

func containerPort(t *testing.T, c *corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container has no port named %q", name)
	return 0
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	// The decoder must be able to fail, or the other tests prove nothing.
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  replicass: 3\n",
		"wrong case":      "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  Replicas: 3\n",
		"duplicate field": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ClusterIP\n  type: LoadBalancer\n",
		"unknown kind":    "apiVersion: v1\nkind: Sevrice\nmetadata: {name: x}\n",
	} {
		if _, _, err := decoder().Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.objects) < 7 {
		t.Errorf("only %d objects in deploy/k8s", len(m.objects))
	}
	for _, name := range []string{"edge-peers", "edge"} {
		if m.services[name] == nil {
			t.Errorf("no Service %q", name)
		}
	}
}

func TestStatefulSet(t *testing.T) {
	m := loadManifests(t)
	s := m.sts
	spec := s.Spec.Template.Spec
	c := m.container(t)

	if s.Name != "edge" || s.Spec.Replicas == nil || *s.Spec.Replicas != 3 {
		t.Errorf("StatefulSet %q replicas %v, want edge with 3", s.Name, ptrString(s.Spec.Replicas))
	}
	if s.Spec.ServiceName != "edge-peers" {
		t.Errorf("serviceName %q, want the headless edge-peers", s.Spec.ServiceName)
	}
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: with OrderedReady edge-0 waits for Ready, which needs a cluster, which needs edge-1 and edge-2", s.Spec.PodManagementPolicy)
	}
	sel, err := metaSelector(s.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(m.podLabels()) {
		t.Errorf("selector %v does not match the pod labels %v", s.Spec.Selector.MatchLabels, m.podLabels())
	}

	// Flags: every $(VAR) is defined, and the peer names follow the headless Service.
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
		if e.Name == "EDGE_ADMIN_TOKEN" {
			t.Error("the admin token must come from the mounted Secret, not an env var in the manifest")
		}
	}
	for _, a := range c.Args {
		for _, v := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if !env[v[1]] {
				t.Errorf("argument %q uses $(%s), which the container env does not define", a, v[1])
			}
		}
	}
	const ns = "prod"
	peer := func(i int, p int32) string {
		return fmt.Sprintf("edge-%d.edge-peers.%s.svc.cluster.local:%d", i, ns, p)
	}
	raftPort, adminPort := containerPort(t, c, "raft"), containerPort(t, c, "admin")
	var wantJoin []string
	for i := range 3 {
		wantJoin = append(wantJoin, peer(i, adminPort))
	}
	for i := range 3 {
		pod := fmt.Sprintf("edge-%d", i)
		a := podArgs(t, c, pod, ns)
		want := map[string]string{
			"id":               pod,
			"bootstrap-expect": "3",
			"voters":           "3",
			"role":             "voter",
			"raft-advertise":   peer(i, raftPort),
			"admin-advertise":  peer(i, adminPort),
			"join":             strings.Join(wantJoin, ","),
		}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("%s: --%s=%q, want %q", pod, k, a[k], v)
			}
		}
		for flag, portName := range map[string]string{"raft-addr": "raft", "admin-addr": "admin", "http-addr": "http", "https-addr": "https", "metrics-addr": "metrics"} {
			if got := port(t, a[flag]); got != containerPort(t, c, portName) {
				t.Errorf("--%s=%s, but the container port %q is %d", flag, a[flag], portName, containerPort(t, c, portName))
			}
			if h, _, _ := net.SplitHostPort(a[flag]); h != "0.0.0.0" && h != "" {
				t.Errorf("--%s=%s listens on one address only; a pod must listen on all", flag, a[flag])
			}
		}
	}
	args := parseArgs(t, c.Args)

	// Data dir on the PVC.
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if len(s.Spec.VolumeClaimTemplates) != 1 || s.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Fatalf("want one volumeClaimTemplate named data, got %v", s.Spec.VolumeClaimTemplates)
	}
	pvc := s.Spec.VolumeClaimTemplates[0]
	if mounts["data"] != args["data-dir"] {
		t.Errorf("--data-dir=%s, but the PVC is mounted at %q", args["data-dir"], mounts["data"])
	}
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) || pvc.Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("PVC template: access modes %v, storage %v", pvc.Spec.AccessModes, pvc.Spec.Resources.Requests.Storage())
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok && vm.Name != pvc.Name {
			t.Errorf("volumeMount %q has no volume", vm.Name)
		}
	}

	// The raft port's cluster key: a file from its own Secret, which the
	// admin token's holders (operators, CI) need not see.
	keyFile := args["cluster-key-file"]
	keyVol := secretVolumeOf(t, c, volumes, keyFile, "--cluster-key-file")
	if keyVol.Secret.SecretName != "edge-cluster-key" || m.secrets["edge-cluster-key"] == nil {
		t.Errorf("the cluster key volume uses Secret %q, want edge-cluster-key defined in deploy/k8s", keyVol.Secret.SecretName)
	}
	if m := keyVol.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
		t.Errorf("the cluster key must not be world-readable (defaultMode %s)", ptrString(m))
	}

	// The admin token: a file from the Secret.
	tokenFile := args["admin-token-file"]
	tokenVol := secretVolumeOf(t, c, volumes, tokenFile, "--admin-token-file")
	secret := m.secrets[tokenVol.Secret.SecretName]
	if secret == nil {
		t.Fatalf("the token volume uses Secret %q, which deploy/k8s does not define", tokenVol.Secret.SecretName)
	}
	if secret.Name != "edge-admin-token" {
		t.Errorf("token Secret is %q, want edge-admin-token", secret.Name)
	}
	var key string
	for _, it := range tokenVol.Secret.Items {
		if it.Path == filepath.Base(tokenFile) {
			key = it.Key
		}
	}
	if key == "" {
		t.Fatalf("the Secret volume maps no key to %s", filepath.Base(tokenFile))
	}
	if _, ok := secret.StringData[key]; !ok {
		if _, ok := secret.Data[key]; !ok {
			t.Errorf("Secret %s has no key %q", secret.Name, key)
		}
	}
	if m := tokenVol.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
		t.Errorf("the token file must not be world-readable (defaultMode %s)", ptrString(m))
	}
	if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil {
		t.Error("no fsGroup: the non-root user could not read the token or write the PVC")
	}

	// Probes on the metrics listener.
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("probe for %s missing or not httpGet", name)
			continue
		}
		if p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %s: path %q port %q, want %s on metrics", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), name)
		}
	}

	// Resources: the HPA scales on CPU requests. (No CPU limit, and memory
	// sizing: TestNoCPULimit, TestGOMEMLIMITFollowsTheMemoryLimit.)
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[n]; !ok {
			t.Errorf("no %s request", n)
		}
	}

	// Shutdown: preStop, leadership transfer, then two drains bounded by
	// --shutdown-grace must fit before SIGKILL.
	grace, err := time.ParseDuration(args["shutdown-grace"])
	if err != nil {
		t.Fatalf("--shutdown-grace: %v", err)
	}
	preStop := time.Duration(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	need := preStop + 2*grace + 5*time.Second
	if tg := spec.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %s is shorter than preStop + leadership transfer + 2 x --shutdown-grace (%v)", ptrString(tg), need)
	}

	// Non-root, read-only root filesystem.
	psc, csc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod securityContext must set runAsNonRoot and a non-zero runAsUser")
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Error("container securityContext must set readOnlyRootFilesystem, no privilege escalation and drop ALL capabilities")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("edged does not use the Kubernetes API: automountServiceAccountToken should be false")
	}

	// Scheduling: a dedicated pool, spread over hosts.
	const poolKey, poolVal = "edge.example/pool", "edge"
	if spec.NodeSelector[poolKey] != poolVal {
		t.Errorf("nodeSelector %v, want %s=%s", spec.NodeSelector, poolKey, poolVal)
	}
	tolerated := false
	for _, tol := range spec.Tolerations {
		op := tol.Operator
		if tol.Key == poolKey && (tol.Effect == "" || tol.Effect == corev1.TaintEffectNoSchedule) &&
			(op == corev1.TolerationOpExists || (op == "" || op == corev1.TolerationOpEqual) && tol.Value == poolVal) {
			tolerated = true
		}
	}
	if !tolerated {
		t.Errorf("tolerations %v do not tolerate the pool taint %s=%s:NoSchedule", spec.Tolerations, poolKey, poolVal)
	}
	var terms []corev1.PodAffinityTerm
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms = a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	spread := false
	for _, term := range terms {
		sel, err := metaSelector(term.LabelSelector.MatchLabels)
		if err == nil && term.TopologyKey == "kubernetes.io/hostname" && sel.Matches(m.podLabels()) {
			spread = true
		}
	}
	if !spread {
		t.Error("no pod anti-affinity on kubernetes.io/hostname selecting Edge pods")
	}

	// A voter's PVC is the cluster's data: kept whatever happens to the
	// StatefulSet (the default policy, Retain, or said so).
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && (p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType || p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType) {
		t.Errorf("persistentVolumeClaimRetentionPolicy %+v deletes a voter's data", p)
	}
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func metaSelector(ml map[string]string) (labels.Selector, error) {
	if len(ml) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(ml), nil
}

func TestServices(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	for name, svc := range m.services {
		sel, err := metaSelector(svc.Spec.Selector)
		if err != nil || !sel.Matches(m.podLabels()) || !sel.Matches(m.replicaLabels()) {
			t.Errorf("Service %s selector %v does not select both voters and replicas", name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			containerPort(t, c, p.TargetPort.String())
			containerPort(t, m.replicaContainer(t), p.TargetPort.String())
		}
	}
	peers := m.services["edge-peers"]
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("edge-peers: clusterIP %q publishNotReadyAddresses %v; peers must resolve before they are Ready", peers.Spec.ClusterIP, peers.Spec.PublishNotReadyAddresses)
	}
	var peerPorts []string
	for _, p := range peers.Spec.Ports {
		peerPorts = append(peerPorts, p.TargetPort.String())
	}
	slices.Sort(peerPorts)
	if !slices.Equal(peerPorts, []string{"admin", "raft"}) {
		t.Errorf("edge-peers ports %v, want raft and admin", peerPorts)
	}
	traffic := m.services["edge"]
	if traffic.Spec.PublishNotReadyAddresses {
		t.Error("the traffic Service must only route to Ready pods")
	}
	got := map[int32]string{}
	for _, p := range traffic.Spec.Ports {
		got[p.Port] = p.TargetPort.String()
	}
	if got[80] != "http" || got[443] != "https" {
		t.Errorf("edge Service ports %v, want 80->http and 443->https", got)
	}
}

// TestPodDisruptionBudget: every Edge pod is covered by exactly one PDB
// (the eviction API refuses to evict a pod that two select), and the
// voters' allows one eviction at a time, so two voters always remain.
func TestPodDisruptionBudget(t *testing.T) {
	m := loadManifests(t)
	covering := func(pod labels.Set) []string {
		var names []string
		for name, p := range m.pdbs {
			if sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(pod) {
				names = append(names, name)
			}
		}
		return names
	}
	for _, pod := range []labels.Set{m.ordinalLabels(0), m.ordinalLabels(2), m.replicaOrdinalLabels(0), m.replicaOrdinalLabels(12)} {
		if c := covering(pod); len(c) != 1 {
			t.Errorf("pod %s is covered by PDBs %v, want exactly one", pod["statefulset.kubernetes.io/pod-name"], c)
		}
	}
	voterPDB := covering(m.ordinalLabels(0))
	if len(voterPDB) != 1 {
		t.Fatal("no single PDB for the voters")
	}
	if slices.Equal(voterPDB, covering(m.replicaOrdinalLabels(0))) {
		t.Errorf("voters and replicas share the PDB %s: a replica's eviction would use the voters' budget", voterPDB[0])
	}
	p := m.pdbs[voterPDB[0]].Spec
	if p.MaxUnavailable == nil || p.MaxUnavailable.String() != "1" || p.MinAvailable != nil {
		t.Errorf("voters' PDB maxUnavailable %v minAvailable %v, want maxUnavailable 1", p.MaxUnavailable, p.MinAvailable)
	}
}

// TestHorizontalPodAutoscaler: the HPA scales the replicas and nothing
// else; the voters' StatefulSet is not autoscaled.
func TestHorizontalPodAutoscaler(t *testing.T) {
	m := loadManifests(t)
	h := m.hpa.Spec
	if r := h.ScaleTargetRef; r.Kind != "StatefulSet" || r.Name != m.replica.Name || r.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want the replicas' StatefulSet %s", r, m.replica.Name)
	}
	for _, o := range m.objects {
		if h, ok := o.(*autoscalingv2.HorizontalPodAutoscaler); ok && h.Spec.ScaleTargetRef.Name == m.sts.Name {
			t.Errorf("HPA %s scales the voters' StatefulSet %s: a scale-down would remove a voter", h.Name, m.sts.Name)
		}
	}
	if m.replica.Spec.Replicas != nil {
		t.Errorf("the replicas' StatefulSet sets replicas: %d; re-applying it would reset the HPA's count", *m.replica.Spec.Replicas)
	}
	voters := m.voters(t)
	if m.sts.Spec.Replicas == nil || int(*m.sts.Spec.Replicas) != voters {
		t.Errorf("voters' StatefulSet replicas %s, want --voters=%d", ptrString(m.sts.Spec.Replicas), voters)
	}
	// 4..16 pods in all, as in the article: three voters and 1..13 replicas.
	if h.MinReplicas == nil || *h.MinReplicas < 1 || int(*h.MinReplicas)+voters != 4 || int(h.MaxReplicas)+voters != 16 {
		t.Errorf("HPA %s..%d replicas beside %d voters, want 4..16 pods in all", ptrString(h.MinReplicas), h.MaxReplicas, voters)
	}
	if len(h.Metrics) != 1 || h.Metrics[0].Resource == nil || h.Metrics[0].Resource.Name != corev1.ResourceCPU ||
		h.Metrics[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
		h.Metrics[0].Resource.Target.AverageUtilization == nil || *h.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Errorf("HPA metrics %+v, want CPU utilization 70%%", h.Metrics)
	}
}

func TestNetworkPolicy(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	np := m.netpol.Spec
	if sel, err := metaSelector(np.PodSelector.MatchLabels); err != nil || !sel.Matches(m.podLabels()) || !sel.Matches(m.replicaLabels()) {
		t.Errorf("NetworkPolicy selects %v, not both voters and replicas", np.PodSelector)
	}
	open := map[string]bool{}
	for _, rule := range np.Ingress {
		for _, p := range rule.Ports {
			containerPort(t, c, p.Port.String())
			if p.Port.String() == "raft" || p.Port.String() == "admin" {
				// TestAdminPortOnlyFromEdgePodsAndAdminClients checks admin.
				if p.Port.String() == "admin" {
					continue
				}
				if len(rule.From) == 0 {
					t.Error("the raft port is open to everyone")
				}
				for _, f := range rule.From {
					if f.PodSelector == nil || !labels.SelectorFromSet(f.PodSelector.MatchLabels).Matches(m.podLabels()) || !labels.SelectorFromSet(f.PodSelector.MatchLabels).Matches(m.replicaLabels()) || f.NamespaceSelector != nil || f.IPBlock != nil {
						t.Errorf("raft port reachable from %+v; only Edge pods may reach it", f)
					}
				}
			} else if len(rule.From) == 0 {
				open[p.Port.String()] = true
			}
		}
	}
	for _, p := range []string{"http", "https", "metrics"} {
		if !open[p] {
			t.Errorf("port %s is not reachable through the NetworkPolicy", p)
		}
	}
}

// TestClusterKeySecretIsRefused: the base's cluster key is a placeholder
// edged will not start with, so nobody runs a cluster whose raft key is in
// a public repository.
// secretVolumeOf returns the Secret volume mounted, read-only, at file's
// directory; flag names the file in failures.
func secretVolumeOf(t *testing.T, c *corev1.Container, volumes map[string]corev1.Volume, file, flag string) *corev1.Volume {
	t.Helper()
	var vol *corev1.Volume
	for _, vm := range c.VolumeMounts {
		if file != "" && filepath.Dir(file) == filepath.Clean(vm.MountPath) {
			v := volumes[vm.Name]
			vol = &v
			if !vm.ReadOnly {
				t.Errorf("the volume of %s is mounted read-write", flag)
			}
		}
	}
	if vol == nil || vol.Secret == nil {
		t.Fatalf("%s=%q is not in a mounted Secret volume", flag, file)
	}
	return vol
}

func TestClusterKeySecretIsRefused(t *testing.T) {
	m := loadManifests(t)
	s := m.secrets["edge-cluster-key"]
	if s == nil {
		t.Fatal("no Secret edge-cluster-key")
	}
	if s.Annotations["edge.example/placeholder"] == "" {
		t.Errorf("the example Secret must be visibly a placeholder: %v", s.Annotations)
	}
	if _, err := peertls.ParseKeys(s.StringData["key"]); err == nil {
		t.Errorf("edged accepts the placeholder cluster key %q", s.StringData["key"])
	}
}

func TestAdminTokenSecretIsAPlaceholder(t *testing.T) {
	m := loadManifests(t)
	s := m.secrets["edge-admin-token"]
	if s == nil {
		t.Fatal("no Secret edge-admin-token")
	}
	if !strings.Contains(s.StringData["token"], "PLACEHOLDER") || s.Annotations["edge.example/placeholder"] == "" {
		t.Errorf("the example Secret must be visibly a placeholder: %q %v", s.StringData["token"], s.Annotations)
	}
}

// TestKustomizeBuild renders deploy/k8s with kustomize (kubectl's built-in)
// and decodes the result strictly too.
func TestKustomizeBuild(t *testing.T) {
	objs := decodeAll(t, "kustomize output", kustomizeBuild(t, k8sDir))
	if want := len(loadManifests(t).objects); len(objs) != want {
		t.Errorf("kustomize rendered %d objects, the files hold %d", len(objs), want)
	}
}

// kustomizeBuild renders dir with kustomize, or kubectl's built-in copy
// (scripts/install-test-deps.sh installs kustomize).
func kustomizeBuild(t *testing.T, dir string) []byte {
	t.Helper()
	var cmd *exec.Cmd
	if k, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command(k, "build", dir)
	} else if k, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command(k, "kustomize", dir)
	} else {
		needBinary(t, "kustomize or kubectl (scripts/install-test-deps.sh installs kustomize)")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	return out
}

func needBinary(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI=true)", what)
	}
	t.Skipf("%s is not installed", what)
}

// edgedFlags returns the flag names `edged --help` lists.
func edgedFlags(t *testing.T) map[string]bool {
	t.Helper()
	edged, _ := binaries(t)
	var stderr bytes.Buffer
	cmd := exec.Command(edged, "--help")
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("edged --help: %v\n%s", err, stderr.String())
	}
	flags := map[string]bool{}
	sc := bufio.NewScanner(&stderr)
	re := regexp.MustCompile(`^\s+--?([a-z0-9][a-z0-9-]*)\b`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = true
		}
	}
	if len(flags) < 10 || !flags["join"] {
		t.Fatalf("could not read the flags from edged --help:\n%s", stderr.String())
	}
	return flags
}

func TestEdgedKnowsEveryFlag(t *testing.T) {
	flags := edgedFlags(t)
	m := loadManifests(t)
	for file, c := range map[string]*corev1.Container{"statefulset.yaml": m.container(t), "replicas.yaml": m.replicaContainer(t)} {
		for name := range parseArgs(t, c.Args) {
			if !flags[name] {
				t.Errorf("%s passes --%s, which edged does not have", file, name)
			}
		}
	}
	for n := 1; n <= 3; n++ {
		for name := range parseArgs(t, devClusterArgs(t, n)) {
			if !flags[name] {
				t.Errorf("dev-cluster.sh passes --%s, which edged does not have", name)
			}
		}
	}
	for _, env := range dockerfileEnv(t) {
		name, ok := strings.CutPrefix(env, "EDGE_")
		if !ok {
			continue
		}
		if flag := strings.ToLower(strings.ReplaceAll(name, "_", "-")); !flags[flag] {
			t.Errorf("Dockerfile sets %s, but edged has no --%s", env, flag)
		}
	}
}

// devClusterArgs asks scripts/dev-cluster.sh for node n's arguments.
func devClusterArgs(t *testing.T, n int) []string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join("..", "scripts", "dev-cluster.sh"), "--print-args", strconv.Itoa(n)).Output()
	if err != nil {
		t.Fatalf("dev-cluster.sh --print-args %d: %v", n, err)
	}
	return strings.Fields(string(out))
}

// addressFlags differ between pods and loopback processes; every other flag
// must have the StatefulSet's value in dev-cluster.sh.
var addressFlags = map[string]bool{
	"id": true, "data-dir": true, "raft-addr": true, "raft-advertise": true, "admin-addr": true,
	"admin-advertise": true, "http-addr": true, "https-addr": true, "metrics-addr": true,
	"join": true, "admin-token-file": true, "cluster-key-file": true,
}

func TestDevClusterUsesTheStatefulSetFlags(t *testing.T) {
	m := loadManifests(t)
	sts := parseArgs(t, m.container(t).Args)
	var admins, ids []string
	var nodes []map[string]string
	for n := 1; n <= 3; n++ {
		dev := parseArgs(t, devClusterArgs(t, n))
		nodes = append(nodes, dev)
		stsNames, devNames := mapsKeys(sts), mapsKeys(dev)
		if !slices.Equal(stsNames, devNames) {
			t.Errorf("node %d: dev-cluster.sh flags %v, StatefulSet flags %v", n, devNames, stsNames)
		}
		for k, v := range sts {
			if !addressFlags[k] && dev[k] != v {
				t.Errorf("node %d: --%s=%q in dev-cluster.sh, %q in the StatefulSet", n, k, dev[k], v)
			}
		}
		for _, k := range []string{"raft-addr", "admin-addr", "http-addr", "https-addr", "metrics-addr"} {
			if h, _, err := net.SplitHostPort(dev[k]); err != nil || h != "127.0.0.1" {
				t.Errorf("node %d: --%s=%q, want loopback", n, k, dev[k])
			}
		}
		admins = append(admins, dev["admin-advertise"])
		ids = append(ids, dev["id"])
	}
	for i, dev := range nodes {
		if dev["join"] != strings.Join(admins, ",") {
			t.Errorf("node %d: --join=%s, want every node's admin address %v", i+1, dev["join"], admins)
		}
		if dev["admin-token-file"] != nodes[0]["admin-token-file"] {
			t.Errorf("node %d uses another token file", i+1)
		}
		if dev["cluster-key-file"] == "" || dev["cluster-key-file"] != nodes[0]["cluster-key-file"] {
			t.Errorf("node %d: --cluster-key-file=%q, want the one key file every node shares", i+1, dev["cluster-key-file"])
		}
	}
	if u := slices.Compact(slices.Sorted(slices.Values(ids))); len(u) != 3 {
		t.Errorf("node IDs %v are not distinct", ids)
	}
}

func mapsKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// dockerfileEnv returns the variable names the Dockerfile's ENV
// instructions set (NAME=value form), in every stage.
func dockerfileEnv(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, ins := range dockerfile(t) {
		if ins.cmd != "ENV" {
			continue
		}
		for _, kv := range strings.Fields(ins.args) {
			if k, _, ok := strings.Cut(kv, "="); ok {
				names = append(names, k)
			}
		}
	}
	return names
}

type instruction struct{ cmd, args string }

// dockerfile reads deploy/Dockerfile into instructions, joining continued
// lines and dropping comments.
func dockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " "), "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		if line := strings.TrimSpace(cur.String()); line != "" {
			cmd, args, _ := strings.Cut(line, " ")
			out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	var froms []string
	var user, expose, run string
	for _, i := range ins {
		switch i.cmd {
		case "FROM":
			froms = append(froms, i.args)
		case "USER":
			user = i.args
		case "EXPOSE":
			expose = i.args
		case "RUN":
			run += i.args + "\n"
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26") {
		t.Errorf("want a golang:1.26 build stage and a runtime stage, got %v", froms)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") && last != "scratch" {
		t.Errorf("runtime stage %q: want distroless static or scratch", last)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("USER %q: the image must run as non-root", user)
	}
	for _, want := range []string{"./cmd/edged", "./cmd/edgectl"} {
		if !strings.Contains(run, want) {
			t.Errorf("the build stage does not build %s", want)
		}
	}
	// The image reports its version as `make build`'s binaries do
	// (edge_build_info, cluster status), so an upgrade can tell old pods
	// from new: edged's build stamps main.version.
	for _, line := range strings.FieldsFunc(run, func(r rune) bool { return r == '\n' || r == '&' }) {
		if strings.Contains(line, "./cmd/edged") && !strings.Contains(line, "-X main.version=${VERSION}") {
			t.Errorf("the edged build does not stamp main.version: %s", strings.TrimSpace(line))
		}
	}
	env := strings.Join(dockerfileEnv(t), " ")
	if !strings.Contains(env, "CGO_ENABLED") {
		t.Error("CGO_ENABLED=0 is not set: the binary would not be static")
	}
	m := loadManifests(t)
	var want, got []string
	for _, p := range m.container(t).Ports {
		want = append(want, strconv.Itoa(int(p.ContainerPort)))
	}
	got = strings.Fields(expose)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("EXPOSE %v, container ports %v", got, want)
	}
}

// Issue 18 item 2: manifests an SRE would not have to patch. One test per
// item; docs/operations.md explains each choice.

// ordinalLabels are the labels the StatefulSet controller gives pod ordinal i
// (apps.kubernetes.io/pod-index, Kubernetes >= 1.28) on top of the template's.
func (m *manifests) ordinalLabels(i int) labels.Set { return stsPodLabels(m.sts, i) }

// replicaOrdinalLabels are replica pod i's labels.
func (m *manifests) replicaOrdinalLabels(i int) labels.Set { return stsPodLabels(m.replica, i) }

func stsPodLabels(s *appsv1.StatefulSet, i int) labels.Set {
	l := labels.Set{}
	for k, v := range s.Spec.Template.Labels {
		l[k] = v
	}
	l["apps.kubernetes.io/pod-index"] = strconv.Itoa(i)
	l["statefulset.kubernetes.io/pod-name"] = fmt.Sprintf("%s-%d", s.Name, i)
	return l
}

func (m *manifests) voters(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(parseArgs(t, m.container(t).Args)["voters"])
	if err != nil || n < 1 {
		t.Fatalf("--voters: %v", err)
	}
	return n
}

// selectsVotersOnly: sel matches every voter pod and no replica, so a
// required rule over it never holds back the HPA's replicas on its own.
func (m *manifests) selectsVotersOnly(t *testing.T, ls *metav1.LabelSelector) bool {
	t.Helper()
	if ls == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return false
	}
	n := m.voters(t)
	for i := range n {
		if !sel.Matches(m.ordinalLabels(i)) {
			return false
		}
	}
	return !sel.Matches(m.replicaOrdinalLabels(0)) && !sel.Matches(m.replicaOrdinalLabels(n)) && !sel.Matches(m.replicaOrdinalLabels(12))
}

func TestVotersOnDistinctHostsAndZones(t *testing.T) {
	m := loadManifests(t)
	spec := m.sts.Spec.Template.Spec
	hosts := false
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == "kubernetes.io/hostname" && len(term.Namespaces) == 0 && term.NamespaceSelector == nil &&
				m.selectsVotersOnly(t, term.LabelSelector) {
				hosts = true
			}
		}
	}
	if !hosts {
		t.Error("no required pod anti-affinity on kubernetes.io/hostname selecting the voters (and only them): two voters could share a node, and losing it would lose the quorum")
	}
	zones := false
	for _, c := range spec.TopologySpreadConstraints {
		if c.TopologyKey == "topology.kubernetes.io/zone" && c.WhenUnsatisfiable == corev1.DoNotSchedule &&
			c.MaxSkew == 1 && m.selectsVotersOnly(t, c.LabelSelector) {
			zones = true
		}
	}
	if !zones {
		t.Error("no topologySpreadConstraint on topology.kubernetes.io/zone with maxSkew 1 and DoNotSchedule over the voters: two voters could share a zone")
	}
}

func TestNoCPULimit(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("CPU limit %s: a CFS throttle stalls raft heartbeats into false elections; keep the request, drop the limit", q.String())
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.IsZero() {
		t.Error("no CPU request: the HPA's utilization and the scheduler's guarantee both need it")
	}
}

func TestGOMEMLIMITFollowsTheMemoryLimit(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	var ref *corev1.ResourceFieldSelector
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
				t.Fatalf("GOMEMLIMIT=%q is a constant; derive it from limits.memory (resourceFieldRef)", e.Value)
			}
			ref = e.ValueFrom.ResourceFieldRef
		}
	}
	if ref == nil {
		t.Fatal("no GOMEMLIMIT: the GC does not know the container's memory limit")
	}
	if ref.Resource != "limits.memory" || (ref.ContainerName != "" && ref.ContainerName != c.Name) {
		t.Errorf("GOMEMLIMIT from %s of container %q, want limits.memory of %s", ref.Resource, ref.ContainerName, c.Name)
	}
	// A bare number is bytes to the Go runtime; any other divisor would
	// need a unit suffix the downward API does not add.
	if !ref.Divisor.IsZero() && ref.Divisor.Value() != 1 {
		t.Errorf("GOMEMLIMIT divisor %s: the Go runtime reads a bare number as bytes, so the divisor must be 1", ref.Divisor.String())
	}
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit: GOMEMLIMIT would be the node's memory")
	}
	// docs/operations.md: size the pod's memory for 2 x --cache-size plus
	// the --gc-min-heap floor (64 MiB unless set).
	args := parseArgs(t, c.Args)
	cache, err := strconv.ParseInt(args["cache-size"], 10, 64)
	if err != nil {
		t.Fatalf("--cache-size: %v", err)
	}
	floor := int64(64 << 20)
	if v, ok := args["gc-min-heap"]; ok {
		if floor, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("--gc-min-heap: %v", err)
		}
	}
	need := 2*cache + floor
	req := c.Resources.Requests[corev1.ResourceMemory]
	if req.Value() < need {
		t.Errorf("memory request %s is below the documented sizing 2 x --cache-size + --gc-min-heap = %d MiB", req.String(), need>>20)
	}
	if req.Cmp(limit) > 0 {
		t.Errorf("memory request %s above the limit %s", req.String(), limit.String())
	}
}

func TestClusterDomainIsConfigurable(t *testing.T) {
	m := loadManifests(t)
	c := m.container(t)
	domain := ""
	for _, e := range c.Env {
		if e.Name == "CLUSTER_DOMAIN" {
			domain = e.Value
		}
	}
	if domain != "cluster.local" {
		t.Errorf("env CLUSTER_DOMAIN=%q, want a literal cluster.local an overlay can patch", domain)
	}
	args := parseArgs(t, c.Args)
	for _, flag := range []string{"raft-advertise", "admin-advertise", "join"} {
		if strings.Contains(args[flag], "cluster.local") {
			t.Errorf("--%s=%s hard-codes the cluster domain", flag, args[flag])
		}
		for _, addr := range strings.Split(args[flag], ",") {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || !strings.HasSuffix(host, ".svc.$(CLUSTER_DOMAIN)") {
				t.Errorf("--%s: %q does not end in .svc.$(CLUSTER_DOMAIN)", flag, addr)
			}
		}
	}
}

func TestAdminPortOnlyFromEdgePodsAndAdminClients(t *testing.T) {
	const clientLabel = "edge.example/admin-client"
	m := loadManifests(t)
	fromEdge, fromClientPods, fromClientNamespaces := false, false, false
	for _, rule := range m.netpol.Spec.Ingress {
		admin := false
		for _, p := range rule.Ports {
			admin = admin || p.Port.String() == "admin" || p.Port.String() == "7001"
		}
		if !admin {
			continue
		}
		if len(rule.From) == 0 {
			t.Error("the admin port is open to every pod and address")
		}
		for _, f := range rule.From {
			switch {
			case f.IPBlock != nil:
				t.Errorf("admin port open to the address block %v", f.IPBlock.CIDR)
			case f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels[clientLabel] == "true":
				fromClientNamespaces = true
			case f.NamespaceSelector != nil:
				t.Errorf("admin port open to namespaces %v without the %s label", f.NamespaceSelector, clientLabel)
			case f.PodSelector != nil && f.PodSelector.MatchLabels[clientLabel] == "true":
				fromClientPods = true
			case f.PodSelector != nil && len(f.PodSelector.MatchLabels) > 0 && len(f.PodSelector.MatchExpressions) == 0 &&
				labels.SelectorFromSet(f.PodSelector.MatchLabels).Matches(m.podLabels()) &&
				labels.SelectorFromSet(f.PodSelector.MatchLabels).Matches(m.replicaLabels()):
				fromEdge = true
			default:
				t.Errorf("admin port open to %+v, neither Edge pods nor %s=true", f, clientLabel)
			}
		}
	}
	if !fromEdge {
		t.Error("Edge pods cannot reach each other's admin port (joins, forwarded writes)")
	}
	if !fromClientPods || !fromClientNamespaces {
		t.Errorf("admin port: pods labelled %s=true reachable %v, namespaces labelled so %v; want both", clientLabel, fromClientPods, fromClientNamespaces)
	}
}

// podMonitor is the part of monitoring.coreos.com/v1 PodMonitor the
// component uses, decoded strictly so that a misspelt field fails.
type podMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

const monitoringDir = k8sDir + "/components/monitoring"

func checkPodMonitor(t *testing.T, m *manifests, pm *podMonitor) {
	t.Helper()
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" {
		t.Errorf("%s %s, want monitoring.coreos.com/v1 PodMonitor", pm.APIVersion, pm.Kind)
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(m.ordinalLabels(0)) || !sel.Matches(m.replicaOrdinalLabels(7)) {
		t.Errorf("PodMonitor selector %v does not select every Edge pod", pm.Spec.Selector)
	}
	c := m.container(t)
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor endpoints %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	containerPort(t, c, ep.Port)
	if ep.Port != "metrics" || ep.Path != m.sts.Spec.Template.Annotations["prometheus.io/path"] || ep.Path != "/metrics" {
		t.Errorf("PodMonitor scrapes port %q path %q, want metrics /metrics", ep.Port, ep.Path)
	}
}

func TestMonitoringComponent(t *testing.T) {
	m := loadManifests(t)
	kb, err := os.ReadFile(filepath.Join(monitoringDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(kb, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", monitoringDir, err)
	}
	if k.Kind != "Component" || k.APIVersion != "kustomize.config.k8s.io/v1alpha1" {
		t.Errorf("monitoring: kind %q apiVersion %q, want an optional kustomize Component", k.Kind, k.APIVersion)
	}
	if len(k.Resources) != 1 {
		t.Fatalf("monitoring component lists %v, want podmonitor.yaml", k.Resources)
	}
	b, err := os.ReadFile(filepath.Join(monitoringDir, k.Resources[0]))
	if err != nil {
		t.Fatal(err)
	}
	var pm podMonitor
	if err := yaml.UnmarshalStrict(b, &pm); err != nil {
		t.Fatalf("%s: %v", k.Resources[0], err)
	}
	if pm.Metadata.Namespace != "" {
		t.Error("the PodMonitor sets a namespace; the manifests must stay namespace-agnostic")
	}
	checkPodMonitor(t, m, &pm)
}

func TestImageIsAVersion(t *testing.T) {
	m := loadManifests(t)
	image := m.container(t).Image
	if _, digest, ok := strings.Cut(image, "@"); ok {
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
			t.Errorf("image %s: malformed digest", image)
		}
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, _ := strings.Cut(name, ":")
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(tag) {
		t.Errorf("image %s: want a release tag vX.Y.Z (or a digest), not %q: pods of one StatefulSet must run one build", image, tag)
	}
}

// TestKustomizeOverlay renders deploy/testdata/overlay: an overlay changes
// the cluster domain with one value, pins the image by digest and adds
// the monitoring component.
func TestKustomizeOverlay(t *testing.T) {
	base := loadManifests(t)
	out := kustomizeBuild(t, filepath.Join("testdata", "overlay"))
	dec := decoder()
	var sts *appsv1.StatefulSet
	var stss []*appsv1.StatefulSet
	var pm *podMonitor
	for i, doc := range splitDocs(out) {
		if bytes.Contains(doc, []byte("kind: PodMonitor")) {
			pm = new(podMonitor)
			if err := yaml.UnmarshalStrict(doc, pm); err != nil {
				t.Fatalf("rendered PodMonitor: %v", err)
			}
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rendered document %d: %v", i+1, err)
		}
		if s, ok := obj.(*appsv1.StatefulSet); ok {
			stss = append(stss, s)
			if s.Name == "edge" {
				sts = s
			}
		}
	}
	if sts == nil || pm == nil {
		t.Fatalf("overlay rendered StatefulSet %v, PodMonitor %v", sts != nil, pm != nil)
	}
	checkPodMonitor(t, base, pm)
	c := &sts.Spec.Template.Spec.Containers[0]
	a := podArgs(t, c, "edge-1", sts.Namespace)
	if want := "edge-1.edge-peers.prod.svc.corp.internal:7000"; a["raft-advertise"] != want {
		t.Errorf("overlay with CLUSTER_DOMAIN=corp.internal: --raft-advertise=%s, want %s", a["raft-advertise"], want)
	}
	if len(stss) != 2 {
		t.Fatalf("overlay rendered %d StatefulSets, want the voters and the replicas", len(stss))
	}
	for _, s := range stss {
		c := &s.Spec.Template.Spec.Containers[0]
		a := podArgs(t, c, s.Name+"-1", s.Namespace)
		if want := s.Name + "-1.edge-peers.prod.svc.corp.internal:7000"; a["raft-advertise"] != want {
			t.Errorf("overlay, %s: --raft-advertise=%s, want %s", s.Name, a["raft-advertise"], want)
		}
		if strings.Contains(strings.Join(c.Args, " ")+a["join"], "cluster.local") {
			t.Errorf("overlay, %s, still uses cluster.local: %v", s.Name, a)
		}
		if !strings.Contains(c.Image, "@sha256:") {
			t.Errorf("overlay, %s: image %s, want pinned by digest", s.Name, c.Image)
		}
	}
	if !strings.Contains(c.Image, "@sha256:") {
		t.Errorf("overlay image %s, want pinned by digest", c.Image)
	}
}

// TestReplicasDifferFromVotersOnlyWhereTheyMust (issue 18 item 1): the
// replicas' StatefulSet is the voters' pod with a non-voter's role, no
// bootstrap, no PVC, and a scheduling rule of its own; everything else (the
// image, probes, resources, security, every other flag) is the same, so the
// two sets cannot drift apart.
func TestReplicasDifferFromVotersOnlyWhereTheyMust(t *testing.T) {
	m := loadManifests(t)
	v, r := m.sts, m.replica
	if r.Spec.ServiceName != v.Spec.ServiceName || r.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("replicas: serviceName %q podManagementPolicy %q, want %q and Parallel", r.Spec.ServiceName, r.Spec.PodManagementPolicy, v.Spec.ServiceName)
	}
	// The selectors do not overlap: each controller owns its own pods.
	vs, err1 := metav1.LabelSelectorAsSelector(v.Spec.Selector)
	rs, err2 := metav1.LabelSelectorAsSelector(r.Spec.Selector)
	if err1 != nil || err2 != nil || !vs.Matches(m.podLabels()) || !rs.Matches(m.replicaLabels()) || vs.Matches(m.replicaLabels()) || rs.Matches(m.podLabels()) {
		t.Errorf("selectors overlap or miss their pods: voters %v, replicas %v", v.Spec.Selector, r.Spec.Selector)
	}

	// Flags: the replica's role, no bootstrap, the voters as join list.
	const ns = "prod"
	vc, rc := m.container(t), m.replicaContainer(t)
	va, ra := podArgs(t, vc, "edge-0", ns), podArgs(t, rc, "edge-replica-0", ns)
	if ra["role"] != "nonvoter" || va["role"] != "voter" {
		t.Errorf("--role: voters %q, replicas %q; want voter and nonvoter", va["role"], ra["role"])
	}
	if _, ok := ra["bootstrap-expect"]; ok {
		t.Error("the replicas pass --bootstrap-expect: a non-voter never bootstraps (edged refuses it)")
	}
	if ra["join"] != va["join"] {
		t.Errorf("replicas --join=%s, want the voters' %s", ra["join"], va["join"])
	}
	for _, f := range []string{"raft-advertise", "admin-advertise"} {
		if !strings.HasPrefix(ra[f], "edge-replica-0.edge-peers.") {
			t.Errorf("replicas --%s=%s, want the pod's own name under edge-peers", f, ra[f])
		}
	}
	for k, val := range parseArgs(t, vc.Args) {
		switch k {
		case "role", "bootstrap-expect":
			continue
		}
		if rv := parseArgs(t, rc.Args)[k]; rv != val {
			t.Errorf("--%s: voters %q, replicas %q", k, val, rv)
		}
	}
	for k := range parseArgs(t, rc.Args) {
		if _, ok := parseArgs(t, vc.Args)[k]; !ok {
			t.Errorf("the replicas pass --%s, the voters do not", k)
		}
	}

	// Storage: no PVC each; the data dir on an emptyDir with a size cap.
	if len(r.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("the replicas claim %d volumes each; a replica's state is rebuilt from a snapshot", len(r.Spec.VolumeClaimTemplates))
	}
	dataDir := parseArgs(t, rc.Args)["data-dir"]
	var dataVol string
	for _, vm := range rc.VolumeMounts {
		if vm.MountPath == dataDir {
			dataVol = vm.Name
		}
	}
	found := false
	for _, vol := range r.Spec.Template.Spec.Volumes {
		if vol.Name == dataVol && vol.EmptyDir != nil && vol.EmptyDir.SizeLimit != nil && !vol.EmptyDir.SizeLimit.IsZero() {
			found = true
		}
	}
	if !found {
		t.Errorf("the replicas' --data-dir=%s is not on an emptyDir with a sizeLimit", dataDir)
	}

	// The container is otherwise the voters': compare with the flags and
	// the data volume set aside.
	strip := func(c *corev1.Container) corev1.Container {
		c2 := *c.DeepCopy()
		c2.Args = nil
		return c2
	}
	if a, b := strip(vc), strip(rc); !equalJSON(t, a, b) {
		t.Errorf("the replicas' container differs from the voters' beyond the flags:\nvoters   %s\nreplicas %s", toJSON(t, a), toJSON(t, b))
	}
	vp, rp := v.Spec.Template.Spec.DeepCopy(), r.Spec.Template.Spec.DeepCopy()
	vp.Containers, rp.Containers, vp.Affinity, rp.Affinity = nil, nil, nil, nil
	vp.TopologySpreadConstraints, rp.TopologySpreadConstraints = nil, nil
	rp.Volumes = slices.DeleteFunc(rp.Volumes, func(vol corev1.Volume) bool { return vol.Name == dataVol })
	if !equalJSON(t, vp, rp) {
		t.Errorf("the replicas' pod differs from the voters' beyond containers, placement and the data volume:\nvoters   %s\nreplicas %s", toJSON(t, vp), toJSON(t, rp))
	}
	if !equalJSON(t, v.Spec.Template.Annotations, r.Spec.Template.Annotations) {
		t.Errorf("pod annotations differ: %v vs %v", v.Spec.Template.Annotations, r.Spec.Template.Annotations)
	}

	// Placement: a replica never lands on a voter's host.
	offVoters := false
	if a := r.Spec.Template.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == "kubernetes.io/hostname" && m.selectsVotersOnly(t, term.LabelSelector) {
				offVoters = true
			}
		}
	}
	if !offVoters {
		t.Error("no required anti-affinity keeps replicas off the voters' hosts")
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return toJSON(t, a) == toJSON(t, b)
}
