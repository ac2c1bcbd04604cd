//! VersityGW's admin API on the S3 endpoint (SigV4-signed `PATCH` requests, XML bodies): its
//! wire types, and the calls the backend makes.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{BACKEND, VersityGw};
use crate::{
    BackendError, Result,
    http::{self, encode},
};

/// Body of `/create-user`: element names are the gateway's Go field names.
#[derive(Serialize)]
#[serde(rename = "Account")]
pub(super) struct NewAccount<'a> {
    #[serde(rename = "Access")]
    pub(super) access: &'a str,
    #[serde(rename = "Secret")]
    pub(super) secret: &'a str,
    #[serde(rename = "Role")]
    pub(super) role: &'a str,
    #[serde(rename = "UserID", skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<u32>,
    #[serde(rename = "GroupID", skip_serializing_if = "Option::is_none")]
    pub(super) group_id: Option<u32>,
}

/// Body of `/update-user`: omitted elements stay unchanged.
#[derive(Serialize)]
#[serde(rename = "MutableProps")]
pub(super) struct MutableProps<'a> {
    #[serde(rename = "Secret")]
    pub(super) secret: &'a str,
    #[serde(rename = "Role", skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'a str>,
    #[serde(rename = "UserID", skip_serializing_if = "Option::is_none")]
    pub(super) user_id: Option<u32>,
    #[serde(rename = "GroupID", skip_serializing_if = "Option::is_none")]
    pub(super) group_id: Option<u32>,
}

/// Reply of `/list-users`: one `<Accounts>` element per account.
#[derive(Deserialize, Default)]
struct ListUsers {
    #[serde(rename = "Accounts", default)]
    accounts: Vec<AccountEntry>,
}

// The secret is parsed only to compare it with a compatibility Secret's (the gateway has no
// other way to tell whether it changed); it is dropped right after and never printed.
#[derive(Deserialize)]
pub(super) struct AccountEntry {
    #[serde(rename = "Access")]
    pub(super) access: String,
    #[serde(rename = "Secret", default)]
    pub(super) secret: String,
    #[serde(rename = "Role", default)]
    pub(super) role: String,
    #[serde(rename = "UserID", default)]
    pub(super) user_id: u32,
    #[serde(rename = "GroupID", default)]
    pub(super) group_id: u32,
}

/// Reply of the admin `/list-buckets`: one `<Buckets>` element per bucket, with its owner.
#[derive(Deserialize, Default)]
struct ListBuckets {
    #[serde(rename = "Buckets", default)]
    buckets: Vec<BucketEntry>,
}

#[derive(Deserialize)]
struct BucketEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Owner", default)]
    owner: String,
}

/// The S3-style error body of a failed admin call.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

impl VersityGw {
    /// One signed admin call (`PATCH`, SigV4 service `s3`, with `x-amz-content-sha256` of the
    /// real body, which the gateway requires). Returns the reply body of a 2xx answer.
    async fn admin(&self, path_and_query: &str, body: Vec<u8>, what: &str) -> Result<String> {
        let url = format!("{}{path_and_query}", self.config.endpoint.trim_end_matches('/'));
        let req = http::signed_request(
            &self.http,
            reqwest::Method::PATCH,
            &url,
            &body,
            &self.config.region,
            &self.config.access_key,
            &self.config.secret_key,
        )?;
        let op = path_and_query.split('?').next().unwrap_or(path_and_query).to_string();
        let resp = req.body(body).send().await.map_err(|e| http::transport_error(BACKEND, &op, what, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| http::transport_error(BACKEND, &op, what, e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let err: ErrorBody = quick_xml::de::from_str(&text).unwrap_or_default();
        let detail = format!("{op} on {what}: HTTP {status}: {}: {}", err.code, err.message);
        Err(http::status_error(BACKEND, status, what, detail))
    }

    pub(super) async fn list_accounts(&self) -> Result<Vec<String>> {
        Ok(self.accounts().await?.into_iter().map(|a| a.access).collect())
    }

    pub(super) async fn accounts(&self) -> Result<Vec<AccountEntry>> {
        let text = self.admin("/list-users", Vec::new(), "accounts").await?;
        let list: ListUsers = parse(&text, "/list-users")?;
        Ok(list.accounts)
    }

    /// Whether the account exists, from the shared snapshot; an absence is confirmed by a
    /// newer list, so an account made a moment ago is never reported missing.
    pub(super) async fn account_exists(&self, name: &str) -> Result<bool> {
        let fetch = || async { Ok(self.list_accounts().await?.into_iter().collect::<BTreeSet<_>>()) };
        let seen = self.account_names.get(fetch).await?;
        if seen.contains(name) {
            return Ok(true);
        }
        Ok(self.account_names.refresh_after(&seen, fetch).await?.contains(name))
    }

    /// Records an account the operator created or deleted in the shared snapshot.
    fn account_changed(&self, name: &str, exists: bool) {
        self.account_names.patch(|names| {
            if exists {
                names.insert(name.to_string());
            } else {
                names.remove(name);
            }
        });
    }

    /// Every bucket with its owner's access key, listed now.
    pub(super) async fn list_bucket_owners(&self) -> Result<BTreeMap<String, String>> {
        let text = self.admin("/list-buckets", Vec::new(), "buckets").await?;
        let list: ListBuckets = parse(&text, "/list-buckets")?;
        Ok(list.buckets.into_iter().map(|b| (b.name, b.owner)).collect())
    }

    /// Every bucket with its owner's access key, from the shared snapshot; when one of
    /// `needed` is missing from it, from a newer list.
    pub(super) async fn bucket_owners(&self, needed: &[&str]) -> Result<Arc<BTreeMap<String, String>>> {
        let seen = self.owners.get(|| self.list_bucket_owners()).await?;
        if needed.iter().all(|b| seen.contains_key(*b)) {
            return Ok(seen);
        }
        self.owners.refresh_after(&seen, || self.list_bucket_owners()).await
    }

    /// Records a bucket's new owner (`None`: the bucket is gone) in the shared snapshot.
    pub(super) fn owner_changed(&self, bucket: &str, owner: Option<&str>) {
        self.owners.patch(|owners| match owner {
            Some(o) => {
                owners.insert(bucket.to_string(), o.to_string());
            }
            None => {
                owners.remove(bucket);
            }
        });
    }

    pub(super) async fn change_owner(&self, bucket: &str, owner: &str) -> Result<()> {
        let path = format!("/change-bucket-owner?bucket={}&owner={}", encode(bucket), encode(owner));
        self.admin(&path, Vec::new(), &format!("bucket {bucket}")).await?;
        self.owner_changed(bucket, Some(owner));
        Ok(())
    }

    pub(super) async fn set_secret(&self, user: &str, secret: &str) -> Result<()> {
        self.update_user(user, &MutableProps { secret, role: None, user_id: None, group_id: None }).await
    }

    /// Changes what `props` names of the account.
    pub(super) async fn update_user(&self, user: &str, props: &MutableProps<'_>) -> Result<()> {
        let body = to_xml(props)?;
        self.admin(&format!("/update-user?access={}", encode(user)), body, &format!("user {user}")).await.map(|_| ())
    }

    /// Creates the account (a Conflict when it exists).
    pub(super) async fn create_user(&self, account: &NewAccount<'_>) -> Result<()> {
        self.admin("/create-user", to_xml(account)?, &format!("user {}", account.access)).await?;
        self.account_changed(account.access, true);
        Ok(())
    }

    /// Deletes the account; the gateway answers 200 even when there is none.
    pub(super) async fn remove_user(&self, user: &str) -> Result<()> {
        self.admin(&format!("/delete-user?access={}", encode(user)), Vec::new(), &format!("user {user}")).await?;
        self.account_changed(user, false);
        Ok(())
    }
}

fn parse<T: for<'de> Deserialize<'de> + Default>(text: &str, op: &str) -> Result<T> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    quick_xml::de::from_str(text).map_err(|e| BackendError::Protocol {
        backend: BACKEND,
        detail: format!("{op}: reply is not the expected XML: {e}"),
    })
}

fn to_xml<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    quick_xml::se::to_string(value)
        .map(String::into_bytes)
        .map_err(|e| BackendError::InvalidInput(format!("XML body: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_bodies_are_escaped_and_replies_parse() {
        let body = String::from_utf8(
            to_xml(&NewAccount { access: "a<b", secret: "s&t", role: "user", user_id: None, group_id: None }).unwrap(),
        )
        .unwrap();
        assert_eq!(body, "<Account><Access>a&lt;b</Access><Secret>s&amp;t</Secret><Role>user</Role></Account>");
        let users: ListUsers = parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListUserAccountsResult><Accounts><Access>u1</Access><Secret>x</Secret><Role>user</Role><UserID>0</UserID></Accounts><Accounts><Access>u2</Access></Accounts></ListUserAccountsResult>",
            "t",
        )
        .unwrap();
        assert_eq!(users.accounts.iter().map(|a| a.access.as_str()).collect::<Vec<_>>(), ["u1", "u2"]);
        let buckets: ListBuckets = parse("<ListBucketsResult></ListBucketsResult>", "t").unwrap();
        assert!(buckets.buckets.is_empty());
        let buckets: ListBuckets =
            parse("<ListBucketsResult><Buckets><Name>b</Name><Owner>u</Owner></Buckets></ListBucketsResult>", "t")
                .unwrap();
        assert_eq!((buckets.buckets[0].name.as_str(), buckets.buckets[0].owner.as_str()), ("b", "u"));
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
