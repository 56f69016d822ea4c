package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/spf13/cobra"
)

// labSummary is one row of `lab list`.
type labSummary struct {
	Name, Subnet, State   string
	Nodes, Running, Repos int
}

// listLabs finds every lab on the engine by the lab label of its network and
// containers, sorted by name. A lab whose network is gone still shows by its
// containers.
func listLabs(ctx context.Context, cli interface {
	NetworkList(context.Context, network.ListOptions) ([]network.Summary, error)
	ContainerList(context.Context, container.ListOptions) ([]container.Summary, error)
}) ([]labSummary, error) {
	byName := map[string]*labSummary{}
	get := func(name string) *labSummary {
		if byName[name] == nil {
			byName[name] = &labSummary{Name: name, Subnet: "-", State: "-"}
		}
		return byName[name]
	}
	f := filters.NewArgs(filters.Arg("label", labelLab))
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list lab networks: %w", err)
	}
	for _, nw := range nets {
		s := get(nw.Labels[labelLab])
		for _, c := range nw.IPAM.Config {
			s.Subnet = c.Subnet
		}
		if d := nw.Labels[labelState]; d != "" {
			s.State = d
		}
	}
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list lab containers: %w", err)
	}
	for _, c := range list {
		s := get(c.Labels[labelLab])
		switch {
		case c.Labels[labelNode] != "":
			s.Nodes++
			if c.State == "running" {
				s.Running++
			}
		case c.Labels[labelRepo] != "":
			s.Repos++
		}
	}
	out := make([]labSummary, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func newListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every lab on this engine: name, subnet, nodes running, state directory",
		Long: `list shows every lab that has a network or a container on this engine (whatever
--name says), with its subnet, how many of its nodes run, and the state directory of
the ` + "`lab up`" + ` that made its network. Remove one with ` + "`lab --name NAME down`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cli, err := connectDocker(cmd.Context())
			if err != nil {
				return err
			}
			defer cli.Close()
			labs, err := listLabs(cmd.Context(), cli)
			if err != nil {
				return err
			}
			printLabs(cmd.OutOrStdout(), labs)
			return nil
		},
	}
}

func printLabs(w io.Writer, labs []labSummary) {
	if len(labs) == 0 {
		fmt.Fprintln(w, "no labs on this engine (run: go run ./lab up)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAB\tSUBNET\tNODES\tREPOSITORY\tSTATE")
	for _, s := range labs {
		repo := "-"
		if s.Repos > 0 {
			repo = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d running\t%s\t%s\n", s.Name, s.Subnet, s.Running, s.Nodes, repo, s.State)
	}
	tw.Flush()
}
