//! The dependency graph: start order as levels, stop order as their reverse, cycles as paths.
//!
//! An edge runs from a process to each of its dependencies. Names that are not defined and
//! self-dependencies are left out here; the manifest validator reports them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

/// A process dependency graph.
#[derive(Debug, Clone, Default)]
pub struct DepGraph {
    graph: DiGraph<Arc<str>, ()>,
    index: HashMap<Arc<str>, NodeIndex>,
}

impl DepGraph {
    /// Builds the graph from `(name, dependencies)` pairs, in manifest order.
    pub fn new<'a, D>(processes: impl IntoIterator<Item = (&'a str, D)>) -> DepGraph
    where
        D: IntoIterator<Item = &'a String>,
    {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        let processes: Vec<(&str, Vec<&String>)> = processes
            .into_iter()
            .map(|(n, d)| (n, d.into_iter().collect()))
            .collect();
        for (name, _) in &processes {
            if !index.contains_key(*name) {
                let name: Arc<str> = Arc::from(*name);
                index.insert(name.clone(), graph.add_node(name));
            }
        }
        for (name, deps) in &processes {
            let from = index[*name];
            for dep in deps {
                if let Some(&to) = index.get(dep.as_str()) {
                    if from != to && graph.find_edge(from, to).is_none() {
                        graph.add_edge(from, to, ());
                    }
                }
            }
        }
        DepGraph { graph, index }
    }

    /// Returns every dependency cycle as a path that ends where it starts (`a -> b -> a`).
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut cycles: Vec<Vec<String>> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|scc| scc.len() > 1)
            .map(|scc| self.cycle_through(&scc))
            .collect();
        cycles.sort();
        cycles
    }

    /// Finds the shortest cycle through the first-defined member of a strongly connected component.
    fn cycle_through(&self, scc: &[NodeIndex]) -> Vec<String> {
        let start = *scc.iter().min().expect("a component has members");
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self
                .graph
                .neighbors(node)
                .filter(|n| scc.contains(n))
                .collect();
            next.sort();
            for n in next {
                if n == start {
                    let mut path = vec![node];
                    while let Some(&p) = parent.get(path.last().unwrap()) {
                        path.push(p);
                    }
                    path.reverse();
                    path.push(start);
                    return path
                        .into_iter()
                        .map(|i| self.graph[i].to_string())
                        .collect();
                }
                if n != start && !parent.contains_key(&n) {
                    parent.insert(n, node);
                    queue.push_back(n);
                }
            }
        }
        unreachable!("every member of a strongly connected component lies on a cycle")
    }

    /// Returns the start order as levels: every process of a level depends only on earlier levels,
    /// so a level can start together. Within a level, manifest order. Fails with the cycles.
    pub fn start_levels(&self) -> Result<Vec<Vec<String>>, Vec<Vec<String>>> {
        let order = toposort(&self.graph, None).map_err(|_| self.cycles())?;
        let mut level: HashMap<NodeIndex, usize> = HashMap::new();
        for &node in order.iter().rev() {
            let l = self
                .graph
                .neighbors(node)
                .map(|d| level[&d] + 1)
                .max()
                .unwrap_or(0);
            level.insert(node, l);
        }
        let depth = level.values().max().map_or(0, |m| m + 1);
        let mut levels = vec![Vec::new(); depth];
        for node in self.graph.node_indices() {
            levels[level[&node]].push(self.graph[node].to_string());
        }
        Ok(levels)
    }

    /// Returns the stop order: the start levels reversed.
    pub fn stop_levels(&self) -> Result<Vec<Vec<String>>, Vec<Vec<String>>> {
        let mut levels = self.start_levels()?;
        levels.reverse();
        Ok(levels)
    }

    /// Returns the processes that depend directly on `name`, in manifest order.
    pub fn dependents(&self, name: &str) -> Vec<Arc<str>> {
        self.neighbours(name, Direction::Incoming)
    }

    /// Returns the direct dependencies of `name` known to the graph, in manifest order.
    pub fn dependencies(&self, name: &str) -> Vec<Arc<str>> {
        self.neighbours(name, Direction::Outgoing)
    }

    /// Returns every process that depends on one of `names`, directly or not, in manifest order;
    /// `names` themselves only when one depends on another.
    pub fn dependents_of_all<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<Arc<str>> {
        let mut seen: Vec<bool> = vec![false; self.graph.node_count()];
        let mut stack: Vec<NodeIndex> = names
            .into_iter()
            .filter_map(|n| self.index.get(n).copied())
            .collect();
        while let Some(node) = stack.pop() {
            for d in self.graph.neighbors_directed(node, Direction::Incoming) {
                if !seen[d.index()] {
                    seen[d.index()] = true;
                    stack.push(d);
                }
            }
        }
        self.graph
            .node_indices()
            .filter(|i| seen[i.index()])
            .map(|i| self.graph[i].clone())
            .collect()
    }

    fn neighbours(&self, name: &str, direction: Direction) -> Vec<Arc<str>> {
        let Some(&node) = self.index.get(name) else {
            return Vec::new();
        };
        let mut found: Vec<NodeIndex> = self.graph.neighbors_directed(node, direction).collect();
        found.sort();
        found.into_iter().map(|i| self.graph[i].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(spec: &[(&str, &[&str])]) -> DepGraph {
        let owned: Vec<(String, Vec<String>)> = spec
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect();
        DepGraph::new(owned.iter().map(|(n, d)| (n.as_str(), d)))
    }

    #[test]
    fn levels_group_what_can_start_together() {
        let g = graph(&[
            ("web", &["api", "cache"]),
            ("api", &["db"]),
            ("db", &[]),
            ("cache", &[]),
            ("lone", &[]),
        ]);
        let levels = g.start_levels().unwrap();
        assert_eq!(
            levels,
            vec![vec!["db", "cache", "lone"], vec!["api"], vec!["web"]]
        );
        assert_eq!(
            g.stop_levels().unwrap(),
            vec![vec!["web"], vec!["api"], vec!["db", "cache", "lone"]]
        );
    }

    #[test]
    fn level_is_the_longest_path_not_the_shortest() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])]);
        assert_eq!(
            g.start_levels().unwrap(),
            vec![vec!["a"], vec!["b"], vec!["c"]]
        );
    }

    #[test]
    fn cycle_is_reported_as_a_closed_path() {
        let g = graph(&[
            ("alpha", &["beta"]),
            ("beta", &["gamma"]),
            ("gamma", &["alpha"]),
            ("ok", &[]),
        ]);
        assert_eq!(g.cycles(), vec![vec!["alpha", "beta", "gamma", "alpha"]]);
        assert_eq!(g.start_levels().unwrap_err(), g.cycles());
    }

    #[test]
    fn each_independent_cycle_is_reported_once() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["a"]),
            ("c", &["d"]),
            ("d", &["e"]),
            ("e", &["c"]),
            ("f", &["a"]),
        ]);
        assert_eq!(
            g.cycles(),
            vec![vec!["a", "b", "a"], vec!["c", "d", "e", "c"]]
        );
    }

    #[test]
    fn shortest_cycle_is_chosen_inside_a_tangle() {
        let g = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(g.cycles(), vec![vec!["a", "c", "a"]]);
    }

    #[test]
    fn unknown_and_self_dependencies_are_ignored() {
        let g = graph(&[("a", &["a", "ghost"]), ("b", &["a"])]);
        assert_eq!(g.start_levels().unwrap(), vec![vec!["a"], vec!["b"]]);
        assert_eq!(g.dependents("a"), vec![Arc::from("b")]);
        assert_eq!(g.dependencies("b"), vec![Arc::from("a")]);
    }

    #[test]
    fn dependents_of_all_walks_the_whole_chain_in_manifest_order() {
        let g = graph(&[
            ("db", &[]),
            ("web", &["api"]),
            ("api", &["db"]),
            ("cache", &[]),
            ("worker", &["db", "cache"]),
            ("cron", &["worker"]),
        ]);
        let names = |v: Vec<Arc<str>>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(g.dependents_of_all(["db"])),
            ["web", "api", "worker", "cron"]
        );
        assert_eq!(names(g.dependents_of_all(["cache"])), ["worker", "cron"]);
        assert_eq!(
            names(g.dependents_of_all(["cron", "ghost"])),
            Vec::<String>::new()
        );
        assert_eq!(names(g.dependents_of_all(["api", "web"])), ["web"]);
    }
}
