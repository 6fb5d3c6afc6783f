//! `squall map` and `squall jobs`: map jobs, with progress while they run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};

use crate::NodeArgs;
use crate::client::{self, encode_path};
use crate::functions::print_json_or;

#[derive(Args)]
pub struct MapArgs {
    /// The function to run on every input
    name: String,
    /// One JSON value per line (`-`: standard input); each is passed to the function as its JSON text
    #[arg(long)]
    inputs: PathBuf,
    /// Elements running at once [default: the function's concurrency limit]
    #[arg(long)]
    concurrency: Option<u32>,
    /// Times a failed element runs again [default: 2]
    #[arg(long)]
    retries: Option<u32>,
    /// Write the outputs to FILE, one line per input in input order (a JSON output as it is, other text as a JSON string, a failure as {"error": ...})
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start the job and print its id without waiting for it
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List the node's map jobs
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a job's state and counts
    Show {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Wait for a job to end, with progress; the exit code says whether every element succeeded
    Wait {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Cancel a job: no more of its elements start
    Cancel {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a job that has ended, with its results
    Rm {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        ))
    };
    let mut inputs = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {} of {}", n + 1, path.display()))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if serde_json::from_str::<&serde_json::value::RawValue>(line).is_err() {
            bail!("line {} of {} is not a JSON value: {line:?}", n + 1, path.display());
        }
        inputs.push(line.to_string());
    }
    Ok(inputs)
}

async fn get_job(node: &str, id: &str) -> Result<squall_api::Job> {
    client::call(node, Method::GET, &format!("/v1/jobs/{}", encode_path(id)), Bytes::new()).await?.ok()?.json()
}

fn describe(out: &mut dyn Write, j: &squall_api::Job) -> std::io::Result<()> {
    let c = &j.counts;
    writeln!(
        out,
        "{}\t{}\t{}\t{}/{} done, {} failed, {} running, {} pending",
        j.id, j.function, j.state, c.done, j.total, c.failed, c.running, c.pending
    )
}

/// Polls the job until it ends, showing progress on standard error.
async fn wait(node: &str, id: &str) -> Result<squall_api::Job> {
    let started = Instant::now();
    let mut job = get_job(node, id).await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(job.total);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} done, {msg} [{elapsed} elapsed, {per_sec}, ETA {eta}]")
                .expect("a valid template"),
        );
        bar
    });
    let mut last_line = Instant::now();
    loop {
        let finished = job.counts.done + job.counts.failed;
        match &bar {
            Some(bar) => {
                bar.set_position(finished);
                bar.set_message(format!("{} failed", job.counts.failed));
            }
            None if last_line.elapsed() >= Duration::from_secs(2) || job.state != "running" => {
                let rate = finished as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "job {id}: {finished}/{} finished ({} failed), {rate:.0}/s, {}",
                    job.total, job.counts.failed, job.state
                );
                last_line = Instant::now();
            }
            None => {}
        }
        if job.state != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = get_job(node, id).await?;
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(job)
}

/// Pages through the job's results, in input order.
async fn each_result(node: &str, id: &str, mut f: impl FnMut(&squall_api::JobResult) -> Result<bool>) -> Result<()> {
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(|| "limit=10000".to_string(), |a| format!("after={a}&limit=10000"));
        let r = client::call(node, Method::GET, &format!("/v1/jobs/{}/results?{q}", encode_path(id)), Bytes::new())
            .await?
            .ok()?;
        let page: squall_api::JobResults = r.json()?;
        for item in &page.results {
            if !f(item)? {
                return Ok(());
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

/// Prints the first failures, and an error if the job did not fully succeed.
async fn summarize(node: &str, job: &squall_api::Job, inputs: Option<&[String]>) -> Result<()> {
    const SHOWN: usize = 10;
    let mut shown = 0;
    if job.counts.failed > 0 {
        eprintln!("{} of {} elements failed; the first ones:", job.counts.failed, job.total);
        each_result(node, &job.id, |r| {
            if r.state == "failed" {
                let why = r.error.as_ref().map_or_else(String::new, |e| format!("{}: {}", e.code, e.message));
                let input =
                    inputs.and_then(|i| i.get(r.index as usize)).map_or(String::new(), |i| format!(" (input {i})"));
                eprintln!("  element {}{input} after {} attempts: {why}", r.index, r.attempts.unwrap_or(0));
                shown += 1;
            }
            Ok(shown < SHOWN)
        })
        .await?;
    }
    match job.state.as_str() {
        "done" => Ok(()),
        "failed" => bail!("job {}: {} of {} elements failed", job.id, job.counts.failed, job.total),
        other => bail!("job {} is {other}: {} of {} elements done", job.id, job.counts.done, job.total),
    }
}

pub async fn map(a: MapArgs) -> Result<()> {
    let inputs = read_lines(&a.inputs)?;
    let mut body = String::with_capacity(inputs.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    body.push_str(&format!("{{\"function\":{}", serde_json::to_string(&a.name)?));
    if let Some(c) = a.concurrency {
        body.push_str(&format!(",\"concurrency\":{c}"));
    }
    if let Some(r) = a.retries {
        body.push_str(&format!(",\"retries\":{r}"));
    }
    body.push_str(",\"inputs\":[");
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(input);
    }
    body.push_str("]}");
    let r = client::call(&a.node.node, Method::POST, "/v1/jobs", Bytes::from(body)).await?.ok()?;
    let job: squall_api::Job = r.json()?;
    if a.detach {
        return print_json_or(&a.node, &job, |out| writeln!(out, "{}", job.id));
    }
    eprintln!("job {} started: {} inputs", job.id, job.total);
    let job = wait(&a.node.node, &job.id).await?;
    if let Some(path) = &a.out {
        let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        each_result(&a.node.node, &job.id, |r| {
            match (&r.output, &r.error) {
                (Some(o), _) if serde_json::from_str::<&serde_json::value::RawValue>(o).is_ok() => {
                    writeln!(out, "{o}")?
                }
                (Some(o), _) => writeln!(out, "{}", serde_json::to_string(o)?)?,
                (None, Some(e)) => writeln!(out, "{}", serde_json::json!({ "error": e }))?,
                (None, None) => writeln!(out, "null")?,
            }
            Ok(true)
        })
        .await?;
        out.flush()?;
    }
    if a.node.json {
        println!("{}", serde_json::to_string(&job)?);
    }
    summarize(&a.node.node, &job, Some(&inputs)).await
}

pub async fn jobs_command(cmd: JobsCommand) -> Result<()> {
    match cmd {
        JobsCommand::Ls { node } => {
            let r = client::call(&node.node, Method::GET, "/v1/jobs", Bytes::new()).await?.ok()?;
            let v: squall_api::JobList = r.json()?;
            print_json_or(&node, &v, |out| v.jobs.iter().try_for_each(|j| describe(out, j)))
        }
        JobsCommand::Show { id, node } => {
            let j = get_job(&node.node, &id).await?;
            print_json_or(&node, &j, |out| describe(out, &j))
        }
        JobsCommand::Wait { id, node } => {
            let j = wait(&node.node, &id).await?;
            print_json_or(&node, &j, |out| describe(out, &j))?;
            summarize(&node.node, &j, None).await
        }
        JobsCommand::Rm { id, node } => {
            let j = get_job(&node.node, &id).await?;
            if j.state == "running" {
                bail!("job {id} is running: `squall jobs cancel {id}` first");
            }
            let path = format!("/v1/jobs/{}", encode_path(&id));
            let j: squall_api::Job =
                client::call(&node.node, Method::DELETE, &path, Bytes::new()).await?.ok()?.json()?;
            print_json_or(&node, &j, |out| writeln!(out, "removed {}", j.id))
        }
        JobsCommand::Cancel { id, node } => {
            let path = format!("/v1/jobs/{}", encode_path(&id));
            let j: squall_api::Job =
                client::call(&node.node, Method::DELETE, &path, Bytes::new()).await?.ok()?.json()?;
            print_json_or(&node, &j, |out| describe(out, &j))
        }
    }
}
