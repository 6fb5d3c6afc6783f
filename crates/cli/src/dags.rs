//! `squall dag`: register, invoke, list, show and remove DAGs of functions.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;

use crate::NodeArgs;
use crate::client::{self, encode_path};
use crate::functions::{print_json_or, read_input, run_invocation};

#[derive(Subcommand)]
pub enum DagCommand {
    /// Register (or replace) a DAG: a chain of functions, or steps and edges from a JSON file
    Create {
        name: String,
        /// Functions that follow one another: `--chain inc,square`
        #[arg(long, value_delimiter = ',', conflicts_with = "file")]
        chain: Vec<String>,
        /// A JSON description: {"steps": [...] or {"ID": "function", ...}, "edges": [["from", "to"], ...]}
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run a DAG on INPUT (`-` reads standard input) and print the sink's output
    Invoke {
        name: String,
        input: Option<String>,
        /// Print where the time went (to standard error)
        #[arg(long)]
        timing: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the registered DAGs
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a DAG's steps and edges
    Show {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a DAG
    Rm {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn describe(out: &mut dyn Write, d: &squall_api::Dag) -> std::io::Result<()> {
    writeln!(out, "{}: {} steps, sink {}", d.name, d.steps.len(), d.sink)?;
    for id in &d.order {
        let function = d.steps.iter().find(|s| &s.id == id).map_or("?", |s| s.function.as_str());
        let preds: Vec<&str> = d.edges.iter().filter(|(_, to)| to == id).map(|(from, _)| from.as_str()).collect();
        let from = if preds.is_empty() { "input".to_string() } else { preds.join(" + ") };
        writeln!(out, "  {id} = {function}({from})")?;
    }
    Ok(())
}

pub async fn dag_command(cmd: DagCommand) -> Result<()> {
    match cmd {
        DagCommand::Create { name, chain, file, node } => {
            let body = match (file, chain.is_empty()) {
                (Some(f), _) => std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?,
                (None, false) => serde_json::to_vec(&serde_json::json!({ "chain": chain }))?,
                (None, true) => bail!("give the DAG as --chain f,g,h or --file dag.json"),
            };
            let path = format!("/v1/dags/{}", encode_path(&name));
            let r = client::call(&node.node, Method::PUT, &path, Bytes::from(body)).await?.ok()?;
            let d: squall_api::Dag = r.json()?;
            print_json_or(&node, &d, |out| describe(out, &d))
        }
        DagCommand::Invoke { name, input, timing, node } => {
            let input = read_input(input.as_deref())?;
            run_invocation(&node, &format!("/v1/dags/{}/invoke", encode_path(&name)), &[], input, timing).await
        }
        DagCommand::Ls { node } => {
            let r = client::call(&node.node, Method::GET, "/v1/dags", Bytes::new()).await?.ok()?;
            let v: squall_api::DagList = r.json()?;
            print_json_or(&node, &v, |out| {
                for d in &v.dags {
                    writeln!(out, "{}\t{} steps\tsink {}", d.name, d.steps.len(), d.sink)?;
                }
                Ok(())
            })
        }
        DagCommand::Show { name, node } => {
            let r = client::call(&node.node, Method::GET, &format!("/v1/dags/{}", encode_path(&name)), Bytes::new())
                .await?
                .ok()?;
            let d: squall_api::Dag = r.json()?;
            print_json_or(&node, &d, |out| describe(out, &d))
        }
        DagCommand::Rm { name, node } => {
            let r = client::call(&node.node, Method::DELETE, &format!("/v1/dags/{}", encode_path(&name)), Bytes::new())
                .await?
                .ok()?;
            let d: squall_api::Dag = r.json()?;
            print_json_or(&node, &d, |out| writeln!(out, "removed {}", d.name))
        }
    }
}
