//! `pagonode receipts`: the operator's view of receipt delivery on a running node, through its
//! admin listener (the copies to re-send live in the node's engine, so this never touches the
//! database directly). `list` shows the outbox rows in a status (FAILED by default: copies that
//! exhausted their attempts, Part A §7.3); `resend` queues a receipt's copies again.

use std::time::Duration;

/// Where the node's admin listener is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminTarget {
    /// The node's admin base URL (its `admin_listen`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8081")]
    pub admin: String,
    /// The admin token (`admin_token` of the node's configuration), if it has one.
    #[arg(long, env = "PAGONODE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReceiptsArgs {
    #[command(subcommand)]
    pub command: ReceiptsCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReceiptsCommand {
    /// List receipt copies (outbox rows) in a status, newest first.
    List {
        #[command(flatten)]
        target: AdminTarget,
        /// PENDING, NOTIFIED or FAILED.
        #[arg(long, default_value = "FAILED")]
        status: String,
        /// At most this many rows (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Queue a receipt's copies again: all of them, or one station's.
    Resend {
        #[command(flatten)]
        target: AdminTarget,
        /// The receipt id (the payment token).
        receipt_id: String,
        /// Only the copy for this station.
        #[arg(long)]
        station: Option<String>,
    },
}

/// Why `pagonode receipts` failed (printed as is).
#[derive(Debug, thiserror::Error)]
pub enum ReceiptsError {
    /// The HTTP client could not be built, or a request not formed.
    #[error("{0}")]
    Client(#[from] reqwest::Error),
    #[error("{url}: {source}")]
    Url {
        url: String,
        source: <reqwest::Url as std::str::FromStr>::Err,
    },
    /// The admin listener could not be reached, or its answer not read.
    #[error("{url}: {source}")]
    Unreachable {
        url: reqwest::Url,
        source: reqwest::Error,
    },
    #[error("{url}: {status}: not a JSON answer ({source})")]
    NotJson {
        url: reqwest::Url,
        status: reqwest::StatusCode,
        source: serde_json::Error,
    },
    /// A non-2xx answer, with its `error` text.
    #[error("{url}: {status}: {reason}")]
    Refused {
        url: reqwest::Url,
        status: reqwest::StatusCode,
        reason: String,
    },
}

/// Runs the subcommand.
pub async fn run(args: ReceiptsArgs) -> Result<(), ReceiptsError> {
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    match args.command {
        ReceiptsCommand::List {
            target,
            status,
            limit,
        } => {
            let url = format!(
                "{}/admin/recipients?status={}&limit={limit}",
                target.admin.trim_end_matches('/'),
                status.to_ascii_uppercase()
            );
            let rows = call(&client, client.get(url), &target).await?;
            let rows = rows.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("no receipt copies {}", status.to_ascii_uppercase());
            }
            for r in rows {
                println!(
                    "{}  {:<20} {:<12} {:<9} attempts={} {}",
                    str_of(&r["receiptId"]),
                    str_of(&r["station"]),
                    str_of(&r["idPA"]),
                    str_of(&r["status"]),
                    r["attempts"],
                    r["lastError"].as_str().unwrap_or(""),
                );
            }
            Ok(())
        }
        ReceiptsCommand::Resend {
            target,
            receipt_id,
            station,
        } => {
            let url = format!(
                "{}/admin/receipts/{receipt_id}/resend",
                target.admin.trim_end_matches('/')
            );
            let mut url =
                reqwest::Url::parse(&url).map_err(|source| ReceiptsError::Url { url, source })?;
            if let Some(s) = &station {
                url.query_pairs_mut().append_pair("station", s);
            }
            let answer = call(&client, client.post(url), &target).await?;
            println!(
                "receipt {receipt_id}: {} cop{} queued",
                answer["queued"],
                if answer["queued"] == 1 { "y" } else { "ies" }
            );
            Ok(())
        }
    }
}

/// Sends an admin request; a non-2xx answer becomes its `error` text.
async fn call(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
    target: &AdminTarget,
) -> Result<serde_json::Value, ReceiptsError> {
    let req = match &target.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let req = req.build()?;
    let url = req.url().clone();
    let unreachable = |source| ReceiptsError::Unreachable {
        url: url.clone(),
        source,
    };
    let resp = client.execute(req).await.map_err(unreachable)?;
    let status = resp.status();
    let text = resp.text().await.map_err(unreachable)?;
    let body: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ReceiptsError::NotJson {
            url: url.clone(),
            status,
            source,
        })?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(ReceiptsError::Refused {
            url,
            status,
            reason: body["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_string(),
        })
    }
}

fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("-")
}
