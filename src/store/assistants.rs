//! Voice-assistant accounts: accounts (one per managing API key), their assistants and public
//! keys, the credit ledger (a call is charged at most once), and the embed side of calls.

use super::{found, map_conflict, Backend, Store, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub id: String,
    pub name: String,
    pub currency: String,
    pub credits_micros: i64,
    /// Postpaid: the balance may go below zero.
    pub allow_negative: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssistantRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub model: String,
    pub voice: Option<String>,
    pub system_prompt: String,
    pub greeting: Option<String>,
    pub temperature: f64,
    pub max_tokens: i64,
    pub price_per_minute_micros: i64,
    pub record: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRecord {
    pub key: String,
    pub account_id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub account_id: String,
    pub call_id: Option<String>,
    /// `charge` or `topup`.
    pub kind: String,
    /// Signed: charges are negative.
    pub amount_micros: i64,
    pub balance_after_micros: i64,
    pub note: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssistantCallRecord {
    pub call_id: String,
    pub account_id: String,
    pub assistant_id: String,
    pub public_key: String,
    pub caller_identity: String,
    pub origin: String,
    /// JSON text.
    pub metadata: String,
    pub model_session_id: Option<String>,
    pub cost_micros: Option<i64>,
    pub end_reason: Option<String>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
}

/// What charging a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Charged now: the ledger entry (its amount may be less than asked when a prepaid balance ran
    /// out; the balance never goes below zero then).
    Charged(LedgerEntry),
    /// The call was charged before (a retry, or a restart after a crash): nothing changed.
    AlreadyCharged(LedgerEntry),
}

const ASSISTANT_COLS: &str = "id, account_id, name, model, voice, system_prompt, greeting, \
    temperature, max_tokens, price_per_minute_micros, record, created_at, updated_at";
const LEDGER_COLS: &str =
    "id, account_id, call_id, kind, amount_micros, balance_after_micros, note, created_at";
const ACALL_COLS: &str = "call_id, account_id, assistant_id, public_key, caller_identity, origin, \
    metadata, model_session_id, cost_micros, end_reason, deleted_at, created_at";

fn account_from_row(r: &AnyRow) -> StoreResult<AccountRecord> {
    Ok(AccountRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        currency: r.try_get("currency")?,
        credits_micros: r.try_get("credits_micros")?,
        allow_negative: r.try_get::<i64, _>("allow_negative")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

fn assistant_from_row(r: &AnyRow) -> StoreResult<AssistantRecord> {
    Ok(AssistantRecord {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        model: r.try_get("model")?,
        voice: r.try_get("voice")?,
        system_prompt: r.try_get("system_prompt")?,
        greeting: r.try_get("greeting")?,
        temperature: r.try_get("temperature")?,
        max_tokens: r.try_get("max_tokens")?,
        price_per_minute_micros: r.try_get("price_per_minute_micros")?,
        record: r.try_get::<i64, _>("record")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn key_from_row(r: &AnyRow) -> StoreResult<PublicKeyRecord> {
    let origins: String = r.try_get("allowed_origins")?;
    Ok(PublicKeyRecord {
        key: r.try_get("key")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn ledger_from_row(r: &AnyRow) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        call_id: r.try_get("call_id")?,
        kind: r.try_get("kind")?,
        amount_micros: r.try_get("amount_micros")?,
        balance_after_micros: r.try_get("balance_after_micros")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
    })
}

fn acall_from_row(r: &AnyRow) -> StoreResult<AssistantCallRecord> {
    Ok(AssistantCallRecord {
        call_id: r.try_get("call_id")?,
        account_id: r.try_get("account_id")?,
        assistant_id: r.try_get("assistant_id")?,
        public_key: r.try_get("public_key")?,
        caller_identity: r.try_get("caller_identity")?,
        origin: r.try_get("origin")?,
        metadata: r.try_get("metadata")?,
        model_session_id: r.try_get("model_session_id")?,
        cost_micros: r.try_get("cost_micros")?,
        end_reason: r.try_get("end_reason")?,
        deleted_at: r.try_get("deleted_at")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// The account managed by API key `id`, created (postpaid, zero balance) on first use.
    pub async fn ensure_account(
        &self,
        id: &str,
        currency: &str,
        now: i64,
    ) -> StoreResult<AccountRecord> {
        if let Some(a) = self.get_account(id).await? {
            return Ok(a);
        }
        let res = sqlx::query(
            "INSERT INTO accounts (id, name, currency, credits_micros, allow_negative, created_at) \
             VALUES ($1, $2, $3, 0, 1, $4)",
        )
        .bind(id)
        .bind(id)
        .bind(currency)
        .bind(now)
        .execute(&self.pool)
        .await;
        match res.map_err(|e| map_conflict(e, "account")) {
            Ok(_) | Err(StoreError::Conflict(_)) => {} // a concurrent first use created it
            Err(e) => return Err(e),
        }
        self.get_account(id).await?.ok_or(StoreError::NotFound)
    }

    pub async fn get_account(&self, id: &str) -> StoreResult<Option<AccountRecord>> {
        let row = sqlx::query(
            "SELECT id, name, currency, credits_micros, allow_negative, created_at FROM accounts \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn update_account(
        &self,
        id: &str,
        name: Option<&str>,
        allow_negative: Option<bool>,
    ) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE accounts SET name = COALESCE($1, name), \
             allow_negative = COALESCE($2, allow_negative) WHERE id = $3",
        )
        .bind(name)
        .bind(allow_negative.map(i64::from))
        .bind(id)
        .execute(&self.pool)
        .await?;
        found(res)
    }

    /// Begin a transaction that serializes changes to one account's balance.
    async fn lock_account(
        &self,
        id: &str,
    ) -> StoreResult<(sqlx::Transaction<'static, sqlx::Any>, AccountRecord)> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let row = sqlx::query(&format!(
            "SELECT id, name, currency, credits_micros, allow_negative, created_at FROM accounts \
             WHERE id = $1{lock}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let account = account_from_row(&row)?;
        Ok((tx, account))
    }

    async fn insert_ledger(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        e: &LedgerEntry,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "INSERT INTO credit_ledger ({LEDGER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&e.id)
        .bind(&e.account_id)
        .bind(&e.call_id)
        .bind(&e.kind)
        .bind(e.amount_micros)
        .bind(e.balance_after_micros)
        .bind(&e.note)
        .bind(e.created_at)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE accounts SET credits_micros = $1 WHERE id = $2")
            .bind(e.balance_after_micros)
            .bind(&e.account_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Add `amount` (positive) to an account's credits.
    pub async fn add_credits(
        &self,
        account: &str,
        amount_micros: i64,
        note: Option<&str>,
        now: i64,
    ) -> StoreResult<LedgerEntry> {
        let (mut tx, acct) = self.lock_account(account).await?;
        let entry = LedgerEntry {
            id: crate::ids::new_id("led_"),
            account_id: account.to_string(),
            call_id: None,
            kind: "topup".into(),
            amount_micros,
            balance_after_micros: acct.credits_micros.saturating_add(amount_micros),
            note: note.map(str::to_string),
            created_at: now,
        };
        Self::insert_ledger(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Charge `cost` for `call_id` exactly once: a second charge of the same call (a retry, or the
    /// start-up repair after a crash) changes nothing. A prepaid account is charged at most its
    /// balance.
    pub async fn charge_call(
        &self,
        account: &str,
        call_id: &str,
        cost_micros: i64,
        now: i64,
    ) -> StoreResult<Charge> {
        if let Some(e) = self.call_charge(call_id).await? {
            return Ok(Charge::AlreadyCharged(e));
        }
        let (mut tx, acct) = self.lock_account(account).await?;
        let cost = cost_micros.max(0);
        let charged = if acct.allow_negative {
            cost
        } else {
            cost.min(acct.credits_micros.max(0))
        };
        let note = (charged < cost).then(|| format!("balance ran out: {cost} micro-units due"));
        let entry = LedgerEntry {
            id: crate::ids::new_id("led_"),
            account_id: account.to_string(),
            call_id: Some(call_id.to_string()),
            kind: "charge".into(),
            amount_micros: -charged,
            balance_after_micros: acct.credits_micros.saturating_sub(charged),
            note,
            created_at: now,
        };
        match Self::insert_ledger(&mut tx, &entry).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(Charge::Charged(entry))
            }
            Err(e) => {
                drop(tx);
                match map_conflict(e, "charge") {
                    StoreError::Conflict(_) => match self.call_charge(call_id).await? {
                        Some(e) => Ok(Charge::AlreadyCharged(e)),
                        None => Err(StoreError::Conflict("charge".into())),
                    },
                    other => Err(other),
                }
            }
        }
    }

    /// The charge entry of a call, if it was charged.
    pub async fn call_charge(&self, call_id: &str) -> StoreResult<Option<LedgerEntry>> {
        let row = sqlx::query(&format!(
            "SELECT {LEDGER_COLS} FROM credit_ledger WHERE call_id = $1 AND kind = 'charge'"
        ))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ledger_from_row).transpose()
    }

    /// Ledger entries of an account, newest first.
    pub async fn ledger(&self, account: &str, limit: i64) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {LEDGER_COLS} FROM credit_ledger WHERE account_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(account)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_from_row).collect()
    }

    // ---- assistants ------------------------------------------------------------------------------

    pub async fn insert_assistant(&self, a: &AssistantRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO assistants ({ASSISTANT_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&a.id)
        .bind(&a.account_id)
        .bind(&a.name)
        .bind(&a.model)
        .bind(&a.voice)
        .bind(&a.system_prompt)
        .bind(&a.greeting)
        .bind(a.temperature)
        .bind(a.max_tokens)
        .bind(a.price_per_minute_micros)
        .bind(i64::from(a.record))
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "assistant"))?;
        Ok(())
    }

    /// Replace every editable field of an assistant (the API merges a PATCH into the record first).
    pub async fn update_assistant(&self, a: &AssistantRecord) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE assistants SET name = $1, model = $2, voice = $3, system_prompt = $4, \
             greeting = $5, temperature = $6, max_tokens = $7, price_per_minute_micros = $8, \
             record = $9, updated_at = $10 WHERE id = $11 AND account_id = $12",
        )
        .bind(&a.name)
        .bind(&a.model)
        .bind(&a.voice)
        .bind(&a.system_prompt)
        .bind(&a.greeting)
        .bind(a.temperature)
        .bind(a.max_tokens)
        .bind(a.price_per_minute_micros)
        .bind(i64::from(a.record))
        .bind(a.updated_at)
        .bind(&a.id)
        .bind(&a.account_id)
        .execute(&self.pool)
        .await?;
        found(res)
    }

    pub async fn get_assistant(&self, id: &str) -> StoreResult<Option<AssistantRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ASSISTANT_COLS} FROM assistants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(assistant_from_row).transpose()
    }

    pub async fn list_assistants(&self, account: &str) -> StoreResult<Vec<AssistantRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSISTANT_COLS} FROM assistants WHERE account_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assistant_from_row).collect()
    }

    pub async fn count_assistants(&self, account: &str) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM assistants WHERE account_id = $1")
                .bind(account)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn delete_assistant(&self, account: &str, id: &str) -> StoreResult<()> {
        let res = sqlx::query("DELETE FROM assistants WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account)
            .execute(&self.pool)
            .await?;
        found(res)
    }

    // ---- public keys -----------------------------------------------------------------------------

    pub async fn insert_public_key(&self, k: &PublicKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO public_keys (key, account_id, name, allowed_origins, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.key)
        .bind(&k.account_id)
        .bind(&k.name)
        .bind(serde_json::to_string(&k.allowed_origins).unwrap_or_else(|_| "[]".into()))
        .bind(k.created_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "public key"))?;
        Ok(())
    }

    pub async fn get_public_key(&self, key: &str) -> StoreResult<Option<PublicKeyRecord>> {
        let row = sqlx::query(
            "SELECT key, account_id, name, allowed_origins, created_at, revoked_at FROM public_keys \
             WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn list_public_keys(&self, account: &str) -> StoreResult<Vec<PublicKeyRecord>> {
        let rows = sqlx::query(
            "SELECT key, account_id, name, allowed_origins, created_at, revoked_at FROM public_keys \
             WHERE account_id = $1 ORDER BY created_at, key",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Whether any active public key allows `origin` (CORS preflights carry no key).
    pub async fn active_key_origins(&self) -> StoreResult<Vec<Vec<String>>> {
        let rows = sqlx::query("SELECT allowed_origins FROM public_keys WHERE revoked_at IS NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("allowed_origins").ok())
            .map(|t| serde_json::from_str(&t).unwrap_or_default())
            .collect())
    }

    pub async fn update_public_key(
        &self,
        account: &str,
        key: &str,
        name: Option<&str>,
        allowed_origins: Option<&[String]>,
    ) -> StoreResult<()> {
        let origins = allowed_origins.map(|o| serde_json::to_string(o).unwrap_or_default());
        let res = sqlx::query(
            "UPDATE public_keys SET name = COALESCE($1, name), \
             allowed_origins = COALESCE($2, allowed_origins) WHERE key = $3 AND account_id = $4",
        )
        .bind(name)
        .bind(origins)
        .bind(key)
        .bind(account)
        .execute(&self.pool)
        .await?;
        found(res)
    }

    /// Revoke a key: it mints nothing from now on (the row stays: calls refer to it).
    pub async fn revoke_public_key(&self, account: &str, key: &str, now: i64) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE public_keys SET revoked_at = $1 WHERE key = $2 AND account_id = $3 \
             AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(key)
        .bind(account)
        .execute(&self.pool)
        .await?;
        found(res)
    }

    pub async fn count_public_keys(&self, account: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM public_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(account)
        .fetch_one(&self.pool)
        .await?)
    }

    // ---- assistant calls -------------------------------------------------------------------------

    pub async fn insert_assistant_call(&self, c: &AssistantCallRecord) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO assistant_calls ({ACALL_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&c.call_id)
        .bind(&c.account_id)
        .bind(&c.assistant_id)
        .bind(&c.public_key)
        .bind(&c.caller_identity)
        .bind(&c.origin)
        .bind(&c.metadata)
        .bind(&c.model_session_id)
        .bind(c.cost_micros)
        .bind(&c.end_reason)
        .bind(c.deleted_at)
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_conflict(e, "assistant call"))?;
        Ok(())
    }

    /// The embed side of a call (also when its record was deleted: finalization still needs it).
    pub async fn get_assistant_call(
        &self,
        call_id: &str,
    ) -> StoreResult<Option<AssistantCallRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ACALL_COLS} FROM assistant_calls WHERE call_id = $1"
        ))
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(acall_from_row).transpose()
    }

    /// An account's visible (not deleted) assistant calls, newest first, keyset-paginated on
    /// `created_at`.
    pub async fn list_assistant_calls(
        &self,
        account: &str,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AssistantCallRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACALL_COLS} FROM assistant_calls WHERE account_id = $1 AND deleted_at IS NULL \
             AND created_at < $2 ORDER BY created_at DESC, call_id DESC LIMIT $3"
        ))
        .bind(account)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(acall_from_row).collect()
    }

    /// Hide a call's record (`DELETE /api/v1/calls/{id}`); the live call is not affected.
    pub async fn hide_assistant_call(
        &self,
        account: &str,
        call_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE assistant_calls SET deleted_at = $1 WHERE call_id = $2 AND account_id = $3 \
             AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(call_id)
        .bind(account)
        .execute(&self.pool)
        .await?;
        found(res)
    }

    /// Record the model session, cost and end reason of an assistant call (fields left `None` keep
    /// their value).
    pub async fn update_assistant_call(
        &self,
        call_id: &str,
        model_session_id: Option<&str>,
        cost_micros: Option<i64>,
        end_reason: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE assistant_calls SET model_session_id = COALESCE($1, model_session_id), \
             cost_micros = COALESCE($2, cost_micros), end_reason = COALESCE($3, end_reason) \
             WHERE call_id = $4",
        )
        .bind(model_session_id)
        .bind(cost_micros)
        .bind(end_reason)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ids of a call's recordings, oldest first.
    pub async fn recording_ids_for_call(&self, call_id: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM recordings WHERE call_id = $1 ORDER BY started_at, id",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ended assistant calls with no cost stored yet (a crash cut their finalization short).
    pub async fn unfinalized_assistant_calls(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT ac.call_id FROM assistant_calls ac JOIN calls c ON c.id = ac.call_id \
             WHERE ac.cost_micros IS NULL AND c.status IN ('completed', 'missed') \
             ORDER BY ac.created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
