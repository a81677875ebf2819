window.YTD.following.part0 = [
  { "following" : { "accountId" : "1" } },
  { "following" : { "userLink" : "https://twitter.com/intent/user?user_id=2" } }
]
