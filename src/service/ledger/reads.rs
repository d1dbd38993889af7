//! Reads of the ledger: entries, accounts and their lists.

use chrono::{DateTime, Duration, Utc};

use super::EXPIRING_WINDOW_DAYS;
use crate::{
    call::CallContext,
    domain::points::{Entry, EntryKind, Uid},
    error::{ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page},
    service::Services,
    store::{
        self,
        ledger::{AccountCursor, EntryFilter},
    },
    tenancy::begin_tenant_transaction,
};

/// Parses an entry id: a positive integer.
pub fn parse_entry_id(value: &str) -> ServiceResult<i64> {
    crate::domain::parse_record_id(value)
        .ok_or_else(|| ServiceError::invalid("entry_id must be a positive integer"))
}

pub async fn get_entry(
    services: &Services,
    call: &CallContext,
    entry_id: &str,
) -> ServiceResult<Entry> {
    let entry_id = parse_entry_id(entry_id)?;
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let entry = store::ledger::get_entry(&transaction, entry_id).await?;
    transaction.commit().await?;
    entry.ok_or_else(|| ServiceError::not_found(format!("entry {entry_id} not found")))
}

/// A uid's balance, what its holds reserve, and the points that expire within 30 days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: String,
    pub balance: i64,
    /// Points reserved by active, unexpired holds (SPEC §12).
    pub held: i64,
    /// `balance - held`, never shown below 0: expiry may take points a hold reserved (a hold does not stop its
    /// points expiring), and then nothing is available.
    pub available: i64,
    pub expiring: Vec<(i64, DateTime<Utc>)>,
}

/// The available points of a balance and what holds reserve of it.
pub fn available(balance: i64, held: i64) -> i64 {
    balance.saturating_sub(held).max(0)
}

/// The account of `uid` as seen inside `transaction` at `now`.
pub(super) async fn account_in(
    transaction: &deadpool_postgres::Transaction<'_>,
    uid: &str,
    now: DateTime<Utc>,
) -> Result<Account, tokio_postgres::Error> {
    let until = now + Duration::days(EXPIRING_WINDOW_DAYS);
    // Independent reads: issued together, tokio-postgres pipelines them in one round trip.
    let (balance, held, expiring) = tokio::join!(
        store::ledger::current_balance(transaction, uid),
        store::holds::held_points(transaction, uid, now),
        store::ledger::expiring(transaction, uid, until),
    );
    let (balance, held) = (balance?, held?);
    Ok(Account {
        uid: uid.to_owned(),
        balance,
        held,
        available: available(balance, held),
        expiring: expiring?,
    })
}

pub async fn get_account(
    services: &Services,
    call: &CallContext,
    uid: &str,
) -> ServiceResult<Account> {
    let uid = Uid::parse(uid)?;
    call.notes().uid = Some(uid.as_str().to_owned());
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let account = account_in(&transaction, uid.as_str(), Utc::now()).await?;
    transaction.commit().await?;
    Ok(account)
}

/// The order of the account list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOrder {
    /// By uid, in byte order.
    Uid,
    /// Largest stored balance first, ties by uid.
    BalanceDesc,
}

impl AccountOrder {
    /// Parses `uid` or `balance_desc`; empty means `uid`.
    pub fn parse(value: &str) -> ServiceResult<AccountOrder> {
        match value {
            "" | "uid" => Ok(AccountOrder::Uid),
            "balance_desc" => Ok(AccountOrder::BalanceDesc),
            _ => Err(ServiceError::invalid(
                "order must be \"uid\" or \"balance_desc\"",
            )),
        }
    }

    /// The page-token list name: a token of one order is refused by the other.
    fn list(self) -> &'static str {
        match self {
            AccountOrder::Uid => "accounts-by-uid",
            AccountOrder::BalanceDesc => "accounts-by-balance",
        }
    }
}

/// The account list request, as received.
pub struct ListAccounts<'a> {
    pub uid_prefix: Option<&'a str>,
    pub order: &'a str,
    pub page_size: i32,
    pub page_token: &'a str,
}

/// An account of the list, with what holds reserve (SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub uid: String,
    pub balance: i64,
    pub held: i64,
    pub available: i64,
    pub updated_at: DateTime<Utc>,
}

/// The smallest string above every string that starts with `prefix`, in code point (= UTF-8 byte) order; None
/// when there is none (a prefix of only `char::MAX`).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// One page of the merchant's accounts.
pub async fn list_accounts(
    services: &Services,
    call: &CallContext,
    request: ListAccounts<'_>,
) -> ServiceResult<(Vec<AccountSummary>, String)> {
    let order = AccountOrder::parse(request.order)?;
    let prefix = request
        .uid_prefix
        .filter(|prefix| !prefix.is_empty())
        .map(Uid::parse)
        .transpose()
        .map_err(|_| ServiceError::invalid("uid_prefix must be 1 to 128 printable characters"))?;
    let page = PageRequest::parse(order.list(), request.page_size, request.page_token)?;
    let invalid_token = || ServiceError::invalid("invalid page_token");
    let cursor = match (&page.cursor, order) {
        (None, _) => None,
        (Some(uid), AccountOrder::Uid) => Some(AccountCursor::Uid(uid.clone())),
        (Some(cursor), AccountOrder::BalanceDesc) => {
            let (balance, uid) = cursor.split_once('/').ok_or_else(invalid_token)?;
            let balance = balance.parse::<i64>().map_err(|_| invalid_token())?;
            Some(AccountCursor::Balance(balance, uid.to_owned()))
        }
    };
    let low = prefix.as_ref().map(Uid::as_str);
    let high = low.and_then(prefix_successor);
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let rows = store::ledger::list_accounts(
        &transaction,
        low,
        high.as_deref(),
        order == AccountOrder::BalanceDesc,
        cursor.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    transaction.commit().await?;
    let (rows, token) = finish_page(order.list(), rows, &page, |(row, stored)| match order {
        AccountOrder::Uid => row.uid.clone(),
        AccountOrder::BalanceDesc => format!("{stored}/{}", row.uid),
    });
    let accounts = rows
        .into_iter()
        .map(|(row, _)| AccountSummary {
            uid: row.uid,
            balance: row.balance,
            held: row.held,
            available: available(row.balance, row.held),
            updated_at: row.updated_at,
        })
        .collect();
    Ok((accounts, token))
}

/// Filters of [`list_entries`], as received.
pub struct ListEntries<'a> {
    pub uid: &'a str,
    pub kind: Option<&'a str>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page_size: i32,
    pub page_token: &'a str,
}

pub async fn list_entries(
    services: &Services,
    call: &CallContext,
    request: ListEntries<'_>,
) -> ServiceResult<(Vec<Entry>, String)> {
    const LIST: &str = "entries";
    let uid = Uid::parse(request.uid)?;
    call.notes().uid = Some(uid.as_str().to_owned());
    let kind = request
        .kind
        .filter(|kind| !kind.is_empty())
        .map(EntryKind::parse)
        .transpose()?;
    if let (Some(from), Some(to)) = (request.from, request.to)
        && from >= to
    {
        return Err(ServiceError::invalid("from must be before to"));
    }
    let page = PageRequest::parse(LIST, request.page_size, request.page_token)?;
    let before = page.time_id_position(|id| {
        id.parse::<i64>()
            .map_err(|_| ServiceError::invalid("invalid page_token"))
    })?;
    let filter = EntryFilter {
        kind,
        from: request.from,
        to: request.to,
        before,
    };
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let rows = store::ledger::list_entries(&transaction, uid.as_str(), &filter, page.fetch_limit())
        .await?;
    transaction.commit().await?;
    Ok(finish_page(LIST, rows, &page, |row| {
        crate::pagination::time_id_cursor(row.created_at, &row.entry_id.to_string())
    }))
}
