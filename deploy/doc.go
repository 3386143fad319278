// Package deploy holds what it takes to run Edge outside a developer's
// machine: the container image (Dockerfile), Kubernetes manifests for
// kustomize (k8s/), and a Grafana dashboard (grafana/). It has no Go API;
// its tests decode every manifest strictly with the Kubernetes API types,
// check the invariants the cluster depends on (three voters that bootstrap
// once, peers named by a headless Service, the admin token from a Secret,
// probes on /readyz and /healthz), check that edged knows every flag the
// manifests and scripts/dev-cluster.sh pass, and run the dev cluster the
// way a person would. docs/operations.md explains how to use all of it.
package deploy
