//! The user steps of stores whose users have no room for a claim (VersityGW's accounts and
//! MinIO's users carry no tags or free-form fields): the claim is a record in the store's
//! ledger, whose bucket the operator makes over S3.

use crate::{
    BackendError, Result,
    ledger::{Ledger, Subject},
    model::{Change, Owner, UserSpec},
};

/// Judges a user that exists on the store for `spec.owner` by its claim: `Unchanged` when the
/// claim is already the owner's, `Updated` once the user is adopted (claimed) for it. A user
/// made outside the operator is adopted only with `adopt`, and never when it is privileged:
/// `privilege`, asked only then, says why it is; `noun` names it in that refusal.
pub async fn judge_existing<P, Fut>(
    markers: &Ledger,
    spec: &UserSpec,
    adopt: bool,
    noun: &str,
    privilege: P,
) -> Result<Change>
where
    P: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<String>>>,
{
    let name = spec.name.as_str();
    let what = format!("user {name}");
    let marker = markers.holder(Subject::User, name).await?;
    if !Owner::check_claim(&what, &marker, &spec.owner, adopt)? {
        return Ok(Change::Unchanged);
    }
    if let Some(why) = privilege().await? {
        return Err(BackendError::NotOwned { what, detail: format!("a privileged {noun} ({why})") });
    }
    claim(markers, Subject::User, name, &spec.owner).await?;
    Ok(Change::Updated)
}

/// Claims the name in the ledger; see [`Ledger::claim`].
pub async fn claim(markers: &Ledger, subject: Subject, name: &str, owner: &Owner) -> Result<bool> {
    // The first claim ever makes the ledger's bucket, owned by the admin account.
    markers.claim(subject, name, owner, || markers.create_bucket()).await
}
