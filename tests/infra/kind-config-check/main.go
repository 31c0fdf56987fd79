// Command kind-config-check decodes a kind cluster configuration strictly into kind's own v1alpha4 types
// (sigs.k8s.io/kind/pkg/apis/config/v1alpha4): an unknown or misspelt field, a wrong type, a wrong kind or
// apiVersion, an unknown node role or port protocol fails, as `kind create cluster --config` would.
// Prints the decoded configuration as JSON, for the test to check what the quickstart relies on.
//
// Usage: kind-config-check FILE
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func check(cfg *v1alpha4.Cluster) error {
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return fmt.Errorf("kind/apiVersion must be Cluster/kind.x-k8s.io/v1alpha4, got %q/%q", cfg.Kind, cfg.APIVersion)
	}
	controlPlanes := 0
	for i, node := range cfg.Nodes {
		switch node.Role {
		case v1alpha4.ControlPlaneRole:
			controlPlanes++
		case v1alpha4.WorkerRole:
		default:
			return fmt.Errorf("nodes[%d].role: unknown role %q", i, node.Role)
		}
		for j, mapping := range node.ExtraPortMappings {
			switch mapping.Protocol {
			case "", v1alpha4.PortMappingProtocolTCP, v1alpha4.PortMappingProtocolUDP, v1alpha4.PortMappingProtocolSCTP:
			default:
				return fmt.Errorf("nodes[%d].extraPortMappings[%d].protocol: unknown %q", i, j, mapping.Protocol)
			}
			if mapping.ContainerPort <= 0 || mapping.ContainerPort > 65535 || mapping.HostPort < -1 || mapping.HostPort > 65535 {
				return fmt.Errorf("nodes[%d].extraPortMappings[%d]: port out of range", i, j)
			}
		}
	}
	if len(cfg.Nodes) > 0 && controlPlanes == 0 {
		return fmt.Errorf("nodes: at least one control-plane node is required")
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check FILE")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg := &v1alpha4.Cluster{}
	if err := yaml.UnmarshalStrict(raw, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	if err := check(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	out, _ := json.Marshal(cfg)
	fmt.Println(string(out))
}
