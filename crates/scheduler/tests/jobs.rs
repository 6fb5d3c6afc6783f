//! Map jobs at the scheduler: limits that are too costly to reach over HTTP
//! with the defaults.

use std::sync::Arc;

use bytes::Bytes;
use squall_runtime::Runtime;
use squall_scheduler::{Error, Functions, JobSpec, Settings};
use squall_store::{Options, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_the_input_limit_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Options::new(dir.path())).unwrap();
    let runtime = Arc::new(
        Runtime::new(squall_runtime::Options { clock: store.handle().clock().clone(), ..Default::default() }).unwrap(),
    );
    let settings = Settings { max_job_inputs: 10, ..Settings::default() };
    let functions = Functions::start(store.handle(), runtime, settings).await.unwrap();
    functions.deploy("counter", Bytes::from_static(squall_guests::COUNTER), Default::default()).await.unwrap();

    let spec = |n: usize| JobSpec {
        function: "counter".into(),
        inputs: (0..n).map(|i| format!("\"k{i}\"").into_bytes()).collect(),
        ..JobSpec::default()
    };
    let refused = functions.start_job(spec(11)).await.unwrap_err();
    assert!(matches!(refused, Error::TooManyInputs(11, 10)), "{refused:?}");
    assert_eq!(refused.code(), "too_many_inputs");
    assert!(functions.jobs().await.unwrap().is_empty(), "a refused job was kept");

    // At the limit it runs.
    let meta = functions.start_job(spec(10)).await.unwrap();
    let counts = loop {
        let (m, c) = functions.job(&meta.id).await.unwrap();
        if m.state != squall_scheduler::JobState::Running {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!((counts.done, counts.failed), (10, 0));
    assert!(functions.drain(std::time::Duration::from_secs(5)).await);
}
